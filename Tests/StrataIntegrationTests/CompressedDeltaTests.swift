import Foundation
import GRDB
import Testing

/// `--update-encoding` and `--task-encoding`: the coordinator asks for compressed deltas in its welcome and sends
/// tasks as differences from the agent's previous model; the real agents follow (error feedback on their side),
/// and the federation still reaches its target over mutual TLS, with every delta in the asked encoding and a
/// fraction of float32's bytes.
extension IntegrationSuite {
    @Suite(.serialized) struct CompressedDeltaTests {
        /// Float32 bytes of one delta (or task parameters) of the 60 × 10 softmax model: 2 tensor headers and 610 values.
        static let float32DeltaBytes = 2 + (2 + 6 + 1 + 8 + 600 * 4) + (2 + 4 + 1 + 4 + 10 * 4)

        /// Four agents to the reference accuracy minus 6 points with `flags`; returns the summary's traffic.
        /// Not 5: agent-01 holds 47 of the 127 weighted test rows, so one of its rows is 0.8 points, and the
        /// federation often sits for a while at 37 of them right (0.9213) before moving to 39 (0.9370); with
        /// the target at reference − 0.05 = 0.9223, one row above that plateau, a CI run once spent its 120 s
        /// there. Reference − 0.06 (0.9123) is below it and still far above what a broken encoding reaches.
        /// `versions`: run that many versions instead of stopping at the target (which comes within ~11 tasks),
        /// and expect the best accuracy to reach it.
        static func federation(_ name: String, flags: [String], versions: Int? = nil) throws -> (traffic: [String: Any], box: Sandbox) {
            let box = Sandbox(name)
            try box.makePKI(agents: 4)
            let reference = try box.makeData(clients: 4)
            let target = (reference - 0.06).rounded(toPlaces: 4)
            let stop = versions.map { ["--max-versions", "\($0)"] } ?? ["--target-accuracy", "\(target)"]
            let (coordinator, port) = try box.startCoordinator(flags + stop + [
                "--min-evaluation-clients", "4", "--max-duration", "120",
                "--standardize", "on", "--statistics-agents", "4"])
            var agents: [Process] = []
            for i in 1...4 {
                let id = String(format: "agent-%02d", i)
                agents.append(try box.start(Binaries.path("strata-agent"),
                                            box.agentArguments(port: port, id: id, database: box.file(String(format: "data/client-%02d.sqlite", i))),
                                            log: "\(id).log"))
            }
            defer { for process in [coordinator] + agents where process.isRunning { process.terminate() } }
            try box.waitForExit(coordinator, timeout: 150)
            let log = "coordinator log:\n\(box.read("coordinator.log").suffix(3000))"
            #expect(coordinator.terminationStatus == 0, "\(log)")
            let summary = try JSONSerialization.jsonObject(with: Data(box.read("summary.json").utf8)) as! [String: Any]
            if versions == nil {
                #expect(summary["targetReached"] as? Bool == true, "\(summary)\n\(log)")
                #expect(summary["trafficAtTarget"] is [String: Any], "\(summary)")
            } else {
                #expect(summary["finalVersion"] as? Int == versions, "\(summary)\n\(log)")
                #expect((summary["bestAccuracy"] as? Double ?? 0) >= target, "best accuracy below \(target): \(summary)\n\(log)")
            }
            // Exactly once, and nothing refused as malformed, mis-shaped or non-finite.
            let db = try DatabaseQueue(path: box.file("coordinator.sqlite"))
            #expect(try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) - COUNT(DISTINCT taskID) FROM committedUpdates") } == 0)
            #expect(try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM refusedUpdates WHERE code IN (100, 101, 1)") } == 0)
            for agent in agents { try box.waitForExit(agent, timeout: 30) }
            return (try #require(summary["traffic"] as? [String: Any], "\(summary)"), box)
        }

        @Test(.timeLimit(.minutes(5)), arguments: [("q8", "q8", 0.3), ("top-k:0.05", "top-k", 0.15)])
        func fourAgentsReachTheTargetSendingCompressedDeltas(_ flag: String, _ encoding: String, _ maxRatio: Double) throws {
            let (traffic, _) = try Self.federation("compressed-\(encoding)", flags: ["--update-encoding", flag])
            let updates = try #require(traffic["deltaUpdates"] as? [String: Int], "\(traffic)")
            let bytes = try #require(traffic["deltaBytes"] as? [String: Int], "\(traffic)")
            // Every agent announced the capability, so every delta came in the asked encoding.
            #expect(Set(updates.keys) == [encoding], "\(traffic)")
            let count = updates[encoding] ?? 0
            // At least one delta per agent (the target may come within a few rounds).
            #expect(count >= 4, "\(traffic)")
            let perDelta = Double(bytes[encoding] ?? 0) / Double(max(1, count))
            #expect(perDelta <= maxRatio * Double(Self.float32DeltaBytes), "\(perDelta) bytes per delta against \(Self.float32DeltaBytes) in float32")
        }

        /// `--task-encoding q8`: after its first (float32) task, each agent gets its model as a q8 difference from
        /// the model of its previous task, and the federation still reaches the target.
        @Test(.timeLimit(.minutes(4)))
        func tasksTravelAsDifferencesFromTheAgentsPreviousModel() throws {
            let (traffic, box) = try Self.federation("compressed-tasks", flags: ["--task-encoding", "q8", "--update-encoding", "q8"], versions: 30)
            let tasks = try #require(traffic["tasks"] as? Int), taskBytes = try #require(traffic["taskBytes"] as? Int)
            #expect(tasks >= 30, "\(traffic)")
            // The 4 first tasks are float32 (~2.5 kB); the others about a quarter of that.
            let perTask = Double(taskBytes - 4 * Self.float32DeltaBytes) / Double(tasks - 4)
            #expect(perTask < 0.4 * Double(Self.float32DeltaBytes), "\(perTask) bytes per later task against \(Self.float32DeltaBytes) in float32")
            for i in 1...4 {
                #expect(!box.read(String(format: "agent-%02d.log", i)).contains("does not hold"), "agent \(i)")
            }
        }
    }
}
