import Foundation
import GRDB
import Testing

/// Latency tiers end to end: real coordinator and agents over mutual TLS on loopback, one agent slowed
/// down with --task-delay so that it lands in the slow tier.
extension IntegrationSuite {
    @Suite(.serialized) struct TierTests {

        @Test(.timeLimit(.minutes(5)))
        func slowAgentLandsInTheSlowTierAndBothTiersFeedTheGlobalModel() throws {
            let box = Sandbox("tiers")
            try box.makePKI(agents: 4)
            let data = try box.run(Binaries.path("strata-datagen"), ["--out", box.file("data"), "--clients", "4", "--seed", "3", "--max-samples", "120"])
            try #require(data.status == 0, "\(data.output)")
            let (coordinator, port) = try box.startCoordinator([
                "--mode", "strata", "--tiers", "2", "--min-tier-size", "1", "--profiling-tasks", "2", "--buffer-size", "2",
                "--buffer-timeout", "3", "--evaluate-every", "0", "--max-duration", "200", "--retier-interval", "1",
            ])
            func startAgent(_ i: Int) throws -> Process {
                let id = String(format: "agent-%02d", i)
                // agent-04 answers every training task at least 1.2 s late: a different latency tier.
                let delay = i == 4 ? ["--task-delay", "1.2"] : []
                return try box.start(Binaries.path("strata-agent"),
                                     box.agentArguments(port: port, id: id, database: box.file(String(format: "data/client-%02d.sqlite", i)), extra: delay),
                                     log: "\(id)-\(UUID().uuidString.prefix(4)).log")
            }
            var agents = try (1...4).map(startAgent)
            defer { for agent in agents where agent.isRunning { agent.terminate() } }
            let db = try DatabaseQueue(path: box.file("coordinator.sqlite"))
            func tiers() throws -> [String: Int] {
                try db.read { db in
                    Dictionary(uniqueKeysWithValues: try Row.fetchAll(db, sql: "SELECT id, tier FROM clients WHERE tier IS NOT NULL").map { ($0["id"] as String, $0["tier"] as Int) })
                }
            }
            func versions(lane: Int, after version: Int64 = 0) throws -> Int {
                try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM modelVersions WHERE lane = ? AND version > ?", arguments: [lane, version]) ?? 0 }
            }
            func latestVersion() throws -> Int64 {
                try db.read { try Int64.fetchOne($0, sql: "SELECT MAX(version) FROM modelVersions") ?? 0 }
            }

            // 1. Profiled and placed: the delayed agent alone in the slow tier, every move recorded with its reason.
            try eventually("all four agents placed in tiers", timeout: 90) { try tiers().count == 4 }
            let placed = try tiers()
            #expect(placed == ["agent-01": 0, "agent-02": 0, "agent-03": 0, "agent-04": 1], "coordinator log:\n\(box.read("coordinator.log").suffix(3000))")
            let formation = try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM tierMoves WHERE reason = 'formation'") }
            #expect(formation == 4)
            // Tiers may form before agent-04 answered twice (its task out 4x the others' latency makes it the slow tier
            // already, TierFormation); its measured latency follows.
            try eventually("agent-04's latency measured", timeout: 30) {
                (try db.read { try Double.fetchOne($0, sql: "SELECT latencySeconds FROM clients WHERE id = 'agent-04'") } ?? 0) >= 1.2
            }

            // 2. Both tiers push into the global model; provenance names the tier and the versions combined.
            try eventually("global versions from both tiers", timeout: 90) { try versions(lane: 0) >= 3 && versions(lane: 1) >= 2 }
            let provenance = try db.read { try Row.fetchOne($0, sql: "SELECT laneVersions, laneWeights FROM modelVersions WHERE lane = 1 ORDER BY version DESC LIMIT 1") }
            let laneVersions = try JSONSerialization.jsonObject(with: Data((provenance?["laneVersions"] as String? ?? "").utf8)) as? [Double]
            let laneWeights = try JSONSerialization.jsonObject(with: Data((provenance?["laneWeights"] as String? ?? "").utf8)) as? [Double]
            #expect(laneVersions?.count == 2)
            #expect(laneWeights?.count == 2)
            #expect((laneWeights ?? []).allSatisfy { $0 > 0 })
            let slowUpdates = try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM committedUpdates WHERE clientID = 'agent-04' AND lane = 1") }
            #expect((slowUpdates ?? 0) >= 2)

            // 3. The slow tier loses its only agent: the fast tier goes on, and the gone tier gets no weight.
            agents[3].interrupt()
            try box.waitForExit(agents[3], timeout: 30)
            let atLoss = try latestVersion()
            try eventually("the fast tier keeps committing without the slow one", timeout: 60) { try versions(lane: 0, after: atLoss + 1) >= 5 }
            let weightsWithoutSlow = try db.read {
                try String.fetchOne($0, sql: "SELECT laneWeights FROM modelVersions WHERE lane = 0 ORDER BY version DESC LIMIT 1")
            }
            let parsed = try JSONSerialization.jsonObject(with: Data((weightsWithoutSlow ?? "").utf8)) as? [Double]
            #expect(parsed?.last == 0, "a tier with no live agent must not weigh in the global model: \(weightsWithoutSlow ?? "-")")

            // 4. It comes back (same identity and state file): the slow tier resumes.
            let beforeReturn = try latestVersion()
            agents[3] = try startAgent(4)
            try eventually("the slow tier pushes again after its agent returned", timeout: 60) { try versions(lane: 1, after: beforeReturn) >= 1 }
            #expect(try tiers()["agent-04"] == 1)

            // Exactly once throughout.
            let duplicates = try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) - COUNT(DISTINCT taskID) FROM committedUpdates") }
            #expect(duplicates == 0)
            coordinator.terminate()
            try box.waitForExit(coordinator, timeout: 30)
            #expect(coordinator.terminationStatus == 0, "coordinator log:\n\(box.read("coordinator.log").suffix(2000))")
        }
    }
}
