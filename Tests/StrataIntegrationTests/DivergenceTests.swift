import Foundation
import GRDB
import Testing

extension IntegrationSuite {
    /// The divergence guard over real TLS with real agents: a federation trained to a good model is
    /// restarted with a server learning rate 60 times too large, diverges, and comes back to the good
    /// model's quality without an operator.
    @Suite(.serialized) struct DivergenceTests {
        /// One row of a `--curve-csv` file (its first 7 columns; later ones, such as asked_clients and counted, are skipped).
        struct CurvePoint {
            var version: Int64
            var accuracy: Double
            var loss: Double
            var clients: Int
        }

        static func curve(_ text: String) -> [CurvePoint] {
            text.split(separator: "\n").dropFirst().compactMap { line in
                let f = line.split(separator: ",").map(String.init)
                guard f.count >= 7, let v = Int64(f[2]), let a = Double(f[3]), let l = Double(f[4]), let c = Int(f[5]) else { return nil }
                return CurvePoint(version: v, accuracy: a, loss: l, clients: c)
            }
        }

        @Test(.timeLimit(.minutes(6)))
        func aFederationPushedIntoDivergenceRecoversOnItsOwn() throws {
            let box = Sandbox("divergence")
            try box.makePKI(agents: 3)
            let data = try box.run(Binaries.path("strata-datagen"), ["--out", box.file("data"), "--clients", "3", "--seed", "4", "--max-samples", "200"])
            try #require(data.status == 0)
            func startAgents(port: Int) throws -> [Process] {
                try (1...3).map { i in
                    let id = String(format: "agent-%02d", i)
                    return try box.start(Binaries.path("strata-agent"),
                                         box.agentArguments(port: port, id: id,
                                                            database: box.file(String(format: "data/client-%02d.sqlite", i))),
                                         log: "\(id)-\(UUID().uuidString.prefix(4)).log")
                }
            }
            // Every version keeps its parameters, so the restored models can be compared with the best's.
            let common = ["--mode", "fedavg", "--min-evaluation-clients", "3", "--keep-models", "0"]

            // 1. A normal run to a good model: no step back on the way.
            let (first, firstPort) = try box.startCoordinator(common + ["--max-versions", "20", "--curve-csv", box.file("phase1.csv")])
            let firstAgents = try startAgents(port: firstPort)
            try box.waitForExit(first, timeout: 120)
            #expect(first.terminationStatus == 0, "coordinator log:\n\(box.read("coordinator.log").suffix(3000))")
            for agent in firstAgents { try box.waitForExit(agent, timeout: 30) }
            #expect(!box.read("coordinator.log").contains("divergence:"), "the guard stepped back in a clean run:\n\(box.read("coordinator.log").suffix(3000))")
            let before = Self.curve(box.read("phase1.csv")).filter { $0.clients == 3 }
            let best = try #require(before.min { $0.loss < $1.loss })
            // The newest version the first run committed (its evaluation may have been cut short by the stop).
            let summary = try JSONSerialization.jsonObject(with: Data(box.read("summary.json").utf8)) as! [String: Any]
            let lastGood = try #require((summary["finalVersion"] as? NSNumber)?.int64Value)
            #expect(lastGood == 20)

            // 2. The same federation restarted with η_g = 60 (1 is right for fedavg).
            try FileManager.default.removeItem(atPath: box.file("coordinator.addr"))
            let (second, secondPort) = try box.startCoordinator(common + ["--server-learning-rate", "60", "--max-duration", "240",
                                                                          "--curve-csv", box.file("phase2.csv")])
            let secondAgents = try startAgents(port: secondPort)
            defer { for process in [second] + secondAgents where process.isRunning { process.terminate() } }
            let metricsPort = try box.endpointPort("metrics")
            func metric(_ name: String, _ labels: [String: String] = [:]) throws -> Double? {
                try PrometheusText.parse(try httpGet(port: metricsPort, path: "/metrics").body).value(name, labels)
            }
            // It diverges, and the guard steps back (the loss of η_g = 60 steps is many times the best's).
            try eventually("a divergence recovery", timeout: 90) {
                (try metric("strata_divergence_recoveries_total", ["cause": "loss-rose"]) ?? 0) >= 1
            }
            // Each step back is logged as a warning with its numbers; the guard stepped back to a model trained
            // before the divergence (the restored model is evaluated once every agent is back).
            func warnings() -> [Substring] {
                box.read("coordinator.log").split(separator: "\n").filter { $0.contains("WARNING") && $0.contains("divergence: stepping every model back") }
            }
            func targets() -> [Int64] { warnings().compactMap { $0.firstMatch(of: /bestVersion=(\d+)/).flatMap { Int64($0.1) } } }
            #expect(!warnings().isEmpty, "no warning in the log:\n\(box.read("coordinator.log").suffix(3000))")
            #expect(warnings().allSatisfy { $0.contains("cause=loss-rose") && $0.contains("bestLoss=") && $0.contains("stepScale=") })
            // Stepped back to a model from before the divergence, or (on a loaded machine, where versions of the
            // first η_g = 60 steps may be evaluated before the restored one) to one whose loss was as good.
            func bestLosses() -> [Double] { warnings().compactMap { $0.firstMatch(of: /bestLoss=([0-9.eE+-]+)/).flatMap { Double($0.1) } } }
            #expect(targets().contains { $0 <= lastGood } || bestLosses().contains { $0 <= best.loss * 1.05 },
                    "stepped back to \(targets()) with losses \(bestLosses()), last good version \(lastGood) (loss \(best.loss))")

            // It comes back to the best model's quality on its own: a version trained after the last step back
            // (not merely the restored copy) evaluated by every agent at least as well as the best before.
            var recovered: CurvePoint?
            try eventually("a version after the step back as good as the best before (loss \(best.loss), accuracy \(best.accuracy))", timeout: 150) {
                let restoredAt = try restoredVersions(box).max() ?? .max
                recovered = Self.curve(box.read("phase2.csv")).first {
                    $0.clients == 3 && $0.version > restoredAt && $0.loss <= best.loss * 1.05 && $0.accuracy >= best.accuracy - 0.02
                }
                return recovered != nil
            }
            #expect(try metric("strata_server_step_scale").map { $0 < 1 } == true)

            second.terminate()   // SIGTERM: drain and exit 0
            try box.waitForExit(second, timeout: 60)
            #expect(second.terminationStatus == 0, "coordinator log:\n\(box.read("coordinator.log").suffix(3000))")
            let bestVersions = targets()

            // The durable state: versions dense across both runs; each step back is a committed version
            // holding exactly the parameters of the version it stepped back to.
            let db = try Self.open(box)
            let versions = try db.read { try Int64.fetchAll($0, sql: "SELECT version FROM modelVersions ORDER BY version") }
            #expect(versions == Array(0...(versions.last ?? 0)))
            let restored = try restoredVersions(box)
            #expect(restored.count == bestVersions.count, "rollback versions \(restored), warnings \(bestVersions)")
            for (version, target) in zip(restored, bestVersions) {
                let same = try db.read {
                    try Bool.fetchOne($0, sql: """
                        SELECT a.parameters = b.parameters FROM modelVersions a, modelVersions b WHERE a.version = ? AND b.version = ?
                        """, arguments: [version, target])
                }
                #expect(same == true, "version \(version) does not hold version \(target)'s parameters")
            }
        }

        /// The coordinator's state (the coordinator may still be writing it).
        static func open(_ box: Sandbox) throws -> DatabaseQueue { try box.observe("coordinator.sqlite") }

        /// The global versions the guard committed as steps back (one per lane; fedavg has one).
        private func restoredVersions(_ box: Sandbox) throws -> [Int64] {
            return try Self.open(box).read { try Int64.fetchAll($0, sql: "SELECT version FROM modelVersions WHERE trigger = 'rollback' ORDER BY version") }
        }
    }
}
