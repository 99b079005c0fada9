import Foundation
import GRDB
import NIOCore
import StrataWire
import Testing

/// The failure detector end to end: a slow agent that keeps heartbeating stays healthy; a stalled peer
/// (TLS session open, nothing sent) is marked suspect then lost and does not hold up a synchronous round.
extension IntegrationSuite {
    @Suite(.serialized) struct HealthTests {

        @Test(.timeLimit(.minutes(3)))
        func longTrainingIsHealthyAndAStalledPeerIsLostWithoutStallingRounds() async throws {
            let box = Sandbox("health")
            try box.makePKI(agents: 3)
            let data = try box.run(Binaries.path("strata-datagen"), ["--out", box.file("data"), "--clients", "2", "--seed", "5", "--max-samples", "100"])
            try #require(data.status == 0, "\(data.output)")
            // fedavg with C = 0 waits for every connected agent: a stalled one would hold every round.
            let (coordinator, port) = try box.startCoordinator([
                "--mode", "fedavg", "--heartbeat-interval", "0.5", "--idle-timeout", "3", "--evaluate-every", "0", "--max-duration", "150",
            ])
            defer { coordinator.terminate() }
            // agent-02 takes 4 s per training task, longer than the 3 s lost timeout, and heartbeats throughout.
            for (i, extra) in [(1, [String]()), (2, ["--task-delay", "4"])] {
                let id = String(format: "agent-%02d", i)
                _ = try box.start(Binaries.path("strata-agent"),
                                  box.agentArguments(port: port, id: id, database: box.file(String(format: "data/client-%02d.sqlite", i)), extra: extra),
                                  log: "\(id).log")
            }
            // agent-03: a stalled peer. It says hello and then never sends another byte.
            let stalled = try await RawClient.connect(port: port, cert: box.file("pki/agents/agent-03.crt"), key: box.file("pki/agents/agent-03.key"),
                                                      ca: box.file("pki/ca.crt"))
            let hello = WireCodec.encode(.hello(Hello(agentVersion: "stalled", featureCount: 60, trainSampleCount: 50, evalSampleCount: 5, pendingUpdateCount: 0)))
            let stalledSession = Task { try await stalled.exchange(send: [hello], timeout: .seconds(120)) { _ in false } }
            defer { stalledSession.cancel() }

            let db = try DatabaseQueue(path: box.file("coordinator.sqlite"))
            func state(_ id: String) throws -> String? {
                try db.read { try String.fetchOne($0, sql: "SELECT health FROM clients WHERE id = ?", arguments: [id]) }
            }
            func transitions(_ id: String) throws -> [String] {
                try db.read { try String.fetchAll($0, sql: "SELECT toState FROM healthEvents WHERE clientID = ? ORDER BY id", arguments: [id]) }
            }
            func diagnose(_ body: () async throws -> Void) async throws {
                do { try await body() } catch {
                    Issue.record("\(error)\ncoordinator log:\n\(box.read("coordinator.log").suffix(4000))")
                    throw error
                }
            }
            try await diagnose { try await eventually("the stalled peer is admitted", timeout: 30) { try state("agent-03") != nil } }
            try await diagnose { try await eventually("the stalled peer is marked lost", timeout: 60) { try state("agent-03") == "lost" } }
            #expect(try transitions("agent-03") == ["healthy", "suspect", "lost"])
            let reasons = try await db.read { try String.fetchAll($0, sql: "SELECT reason FROM healthEvents WHERE clientID = 'agent-03'") }
            #expect(reasons.dropFirst().allSatisfy { $0.contains("nothing received") || $0.contains("disconnected") }, "\(reasons)")
            // The coordinator closed the stalled session: the raw client's exchange ends.
            let replies = try await stalledSession.value
            #expect(replies.contains { if case .error(let e) = $0 { e.code == .heartbeatTimeout } else { false } })

            // Rounds go on without it, and the slow agent's updates are in them.
            let atLoss = try await db.read { try Int.fetchOne($0, sql: "SELECT MAX(version) FROM modelVersions") ?? 0 }
            try await eventually("two more rounds after the stalled peer was dropped", timeout: 60) {
                try db.read { try Int.fetchOne($0, sql: "SELECT MAX(version) FROM modelVersions") ?? 0 } >= atLoss + 2
            }
            let slowCommitted = try await db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM committedUpdates WHERE clientID = 'agent-02'") ?? 0 }
            #expect(slowCommitted >= 2)
            // Trained for 4 s per task with a 3 s lost timeout, and never suspect or lost.
            let slowTransitions = try transitions("agent-02")
            #expect(slowTransitions == ["healthy"], "agent-02 transitions: \(slowTransitions)")
            #expect(try state("agent-02") == "healthy")
            await stalled.shutdown()

            // SIGTERM drains: exit 0, and the database was checkpointed (the WAL is empty).
            coordinator.interrupt()
            try box.waitForExit(coordinator, timeout: 30)
            #expect(coordinator.terminationStatus == 0)
            let wal = (try? FileManager.default.attributesOfItem(atPath: box.file("coordinator.sqlite-wal"))[.size] as? Int) ?? 0
            #expect(wal == 0, "WAL still holds \(wal) bytes after the drain's checkpoint")
        }
    }
}
