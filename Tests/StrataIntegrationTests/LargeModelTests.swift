import Foundation
import GRDB
import Testing

/// A model larger than a frame (§2 "Messages in parts"): with frames of 64 KiB, an MLP of 67,586 parameters
/// (270 kB) goes to the agents and comes back in parts of every task and update, over mutual TLS, and the
/// federation trains it as any other: to its target, every update committed once, the stored model whole.
extension IntegrationSuite {
    @Suite(.serialized) struct LargeModelTests {
        @Test(.timeLimit(.minutes(5)))
        func aModelLargerThanAFrameTravelsInPartsAndTrains() throws {
            let box = Sandbox("large-model")
            try box.makePKI(agents: 3)
            try FileManager.default.createDirectory(atPath: box.file("data"), withIntermediateDirectories: true)
            for k in 1...3 { try MLPFederationTests.writeRings(box.file("data/rings-\(k).sqlite"), agent: k, rows: 300) }
            let (coordinator, port) = try box.startCoordinator([
                "--model", "mlp", "--hidden", "256,256", "--features", "2", "--classes", "2", "--standardize", "on",
                "--statistics-agents", "3", "--min-evaluation-clients", "3", "--target-metric", "accuracy", "--target", "0.9",
                "--learning-rate", "0.02", "--local-epochs", "1", "--max-duration", "150", "--max-frame-bytes", "65536"])
            let agents = try box.startAgents(3, port: port) { box.file("data/rings-\($0).sqlite") }
            defer { for process in [coordinator] + agents where process.isRunning { process.terminate() } }
            try box.waitForExit(coordinator, timeout: 180)
            let log = "coordinator log:\n\(box.read("coordinator.log").suffix(3000))\nagent:\n\(box.read("agent-01.log").suffix(1500))"
            #expect(coordinator.terminationStatus == 0, "\(log)")
            let summary = try JSONSerialization.jsonObject(with: Data(box.read("summary.json").utf8)) as! [String: Any]
            #expect(summary["targetReached"] as? Bool == true, "\(summary)\n\(log)")
            #expect((summary["finalVersion"] as? Int ?? 0) >= 2, "\(summary)")
            // Every task (~270 kB) was larger than a frame, and so was every delta.
            let traffic = try #require(summary["traffic"] as? [String: Any], "\(summary)")
            let tasks = try #require(traffic["tasks"] as? Int), taskBytes = try #require(traffic["taskBytes"] as? Int)
            #expect(tasks >= 3 && taskBytes / max(1, tasks) > 4 * 65_536, "\(traffic)")

            let parameterCount = 2 * 256 + 256 + 256 * 256 + 256 + 256 * 2 + 2
            let db = try DatabaseQueue(path: box.file("coordinator.sqlite"))
            let stored = try db.read { try Data.fetchOne($0, sql: "SELECT parameters FROM modelVersions WHERE version = ?", arguments: [summary["finalVersion"] as? Int ?? 0]) }
            #expect(stored?.count == 4 * parameterCount, "\(stored?.count ?? 0) bytes")
            #expect(try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM committedUpdates") } ?? 0 >= 3)
            #expect(try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) - COUNT(DISTINCT taskID) FROM committedUpdates") } == 0)
            #expect(try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM refusedUpdates WHERE code IN (1, 3, 100, 101)") } == 0)
            for agent in agents { try box.waitForExit(agent, timeout: 30) }
            for k in 1...3 {
                let agentLog = box.read(String(format: "agent-%02d.log", k))
                #expect(!agentLog.contains("frame payload of") && !agentLog.contains("malformed"), "agent \(k):\n\(agentLog.suffix(1500))")
            }
        }
    }
}
