import Foundation
import GRDB
import Testing

/// The built-in MLP as a federation's model: four agents, each holding its own share of two concentric rings
/// (no line separates the classes), train `--model mlp` over mutual TLS to 95 % accuracy, every update
/// committed once.
extension IntegrationSuite {
    @Suite(.serialized) struct MLPFederationTests {
        /// Rows on two rings (inner radius < 1, outer 1.5–2.5), 80 % train; agent k sees mostly one half-plane
        /// (angles centred on k · 90°), so the agents' data differ.
        static func writeRings(_ path: String, agent: Int, rows: Int) throws {
            let db = try DatabaseQueue(path: path)
            var state = UInt64(agent) &* 0x9E37_79B9_7F4A_7C15 &+ 1
            func uniform() -> Double {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return Double(state >> 11) / Double(1 << 53)
            }
            try db.write { db in
                try db.execute(sql: "CREATE TABLE samples (id INTEGER PRIMARY KEY, x REAL, y REAL, label INTEGER, split TEXT)")
                for i in 0..<rows {
                    let outer = uniform() < 0.5
                    let radius = outer ? 1.5 + uniform() : uniform()
                    let angle = (Double(agent) * 0.5 + (uniform() - 0.5) * 1.2) * Double.pi
                    try db.execute(sql: "INSERT INTO samples (x, y, label, split) VALUES (?, ?, ?, ?)",
                                   arguments: [radius * cos(angle), radius * sin(angle), outer ? 1 : 0, i % 5 == 0 ? "test" : "train"])
                }
            }
        }

        @Test(.timeLimit(.minutes(5)))
        func fourAgentsTrainAnMLPOnRingsNoLinearModelSeparates() throws {
            let box = Sandbox("mlp-federation")
            try box.makePKI(agents: 4)
            try FileManager.default.createDirectory(atPath: box.file("data"), withIntermediateDirectories: true)
            for k in 1...4 { try Self.writeRings(box.file("data/rings-\(k).sqlite"), agent: k, rows: 400) }
            let (coordinator, port) = try box.startCoordinator([
                "--model", "mlp", "--hidden", "16,16", "--features", "2", "--classes", "2", "--standardize", "on",
                "--statistics-agents", "4", "--min-evaluation-clients", "4", "--target-metric", "accuracy", "--target", "0.95",
                "--learning-rate", "0.02", "--local-epochs", "1", "--max-duration", "150"])
            let agents = try box.startAgents(4, port: port) { box.file("data/rings-\($0).sqlite") }
            defer { for process in [coordinator] + agents where process.isRunning { process.terminate() } }
            try box.waitForExit(coordinator, timeout: 180)
            let log = "coordinator log:\n\(box.read("coordinator.log").suffix(3000))\nagent:\n\(box.read("agent-01.log").suffix(1500))"
            #expect(coordinator.terminationStatus == 0, "\(log)")
            let summary = try JSONSerialization.jsonObject(with: Data(box.read("summary.json").utf8)) as! [String: Any]
            #expect(summary["targetReached"] as? Bool == true, "\(summary)\n\(log)")
            #expect((summary["bestAccuracy"] as? Double ?? 0) >= 0.95, "\(summary)")
            // Several aggregated versions, not one lucky local fit (one epoch per task at a small rate).
            #expect((summary["finalVersion"] as? Int ?? 0) >= 3, "\(summary)")

            let db = try DatabaseQueue(path: box.file("coordinator.sqlite"))
            // The best model's tensors, from the stored blob, in the manifest's order and shapes.
            let stored = try db.read { try Data.fetchOne($0, sql: "SELECT parameters FROM modelVersions WHERE version = ?", arguments: [summary["finalVersion"] as? Int ?? 0]) }
            let parameterCount = 2 * 16 + 16 + 16 * 16 + 16 + 16 * 2 + 2   // layer1 2x16, layer2 16x16, layer3 16x2, with biases
            #expect(stored?.count == 4 * parameterCount, "\(stored?.count ?? 0) bytes")
            #expect(try db.read { try String.fetchOne($0, sql: "SELECT value FROM meta WHERE key = 'model'") } == "mlp:2x2:relu:16,16")
            let duplicates = try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) - COUNT(DISTINCT taskID) FROM committedUpdates") }
            #expect(duplicates == 0)
            // A restart with other layers is refused: the stored model is not the configured one.
            let second = try box.run(Binaries.path("strata-coordinator"), [
                "--cert", box.file("pki/coordinator.crt"), "--key", box.file("pki/coordinator.key"), "--ca", box.file("pki/ca.crt"),
                "--state", box.file("coordinator.sqlite"), "--port", "0", "--model", "mlp", "--hidden", "8", "--features", "2", "--classes", "2"],
                timeout: 30)
            #expect(second.status != 0 && second.output.contains("mlp:2x2:relu:16,16"), "\(second.output.suffix(1000))")
        }
    }
}
