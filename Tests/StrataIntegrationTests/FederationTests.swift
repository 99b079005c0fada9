import Foundation
import GRDB
import NIOCore
import StrataWire
import Testing

/// These tests start the real programs over real mutual TLS on loopback.
extension IntegrationSuite {
    @Suite(.serialized) struct FederationTests {
        @Test(.timeLimit(.minutes(5)))
        func threeAgentsReachTheTargetOverMutualTLS() throws {
            let box = Sandbox("federation")
            try box.makePKI(agents: 3)
            let reference = try box.makeData(clients: 3)
            let target = (reference - 0.05).rounded(toPlaces: 4)
            let (coordinator, port) = try box.startCoordinator(["--target-accuracy", "\(target)", "--min-evaluation-clients", "3", "--max-duration", "120", "--buffer-size", "2",
                                                                   "--standardize", "on", "--statistics-agents", "3"])
            var agents: [Process] = []
            for i in 1...3 {
                let id = String(format: "agent-%02d", i)
                agents.append(try box.start(Binaries.path("strata-agent"),
                                            box.agentArguments(port: port, id: id, database: box.file(String(format: "data/client-%02d.sqlite", i))),
                                            log: "\(id).log"))
            }
            try box.waitForExit(coordinator, timeout: 150)
            #expect(coordinator.terminationStatus == 0, "coordinator log:\n\(box.read("coordinator.log").suffix(3000))")
            for agent in agents { try box.waitForExit(agent, timeout: 30) }
            for (i, agent) in agents.enumerated() {
                #expect(agent.terminationStatus == 0, "agent \(i + 1) log:\n\(box.read(String(format: "agent-%02d.log", i + 1)).suffix(2000))")
            }

            let summary = try JSONSerialization.jsonObject(with: Data(box.read("summary.json").utf8)) as! [String: Any]
            #expect(summary["targetReached"] as? Bool == true)
            let evaluation = try #require(summary["lastEvaluation"] as? [String: Any])
            #expect((evaluation["accuracy"] as! Double) >= target)
            #expect(evaluation["clients"] as? Int == 3)

            // Durable state: every committed task once, versions dense and increasing, every agent contributed.
            let db = try DatabaseQueue(path: box.file("coordinator.sqlite"))
            let duplicates = try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) - COUNT(DISTINCT taskID) FROM committedUpdates") }
            let versions = try db.read { try Int64.fetchAll($0, sql: "SELECT version FROM modelVersions ORDER BY version") }
            let contributors = try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(DISTINCT clientID) FROM committedUpdates") }
            let refused = try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM refusedUpdates") }
            #expect(duplicates == 0)
            #expect(versions == Array(0...(versions.last ?? 0)))
            #expect(contributors == 3)
            #expect(refused == 0)
            // The agents' view agrees: every update acknowledged as committed is in the coordinator's table.
            for i in 1...3 {
                let agentState = try DatabaseQueue(path: box.file(String(format: "agent-%02d.state.sqlite", i)))
                let acked = try agentState.read { try Int64.fetchAll($0, sql: "SELECT taskID FROM acknowledged WHERE status = 'committed'") }
                #expect(!acked.isEmpty)
                let found = try db.read { db in
                    try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM committedUpdates WHERE taskID IN (\(acked.map(String.init).joined(separator: ",")))")
                }
                #expect(found == acked.count)
            }
        }

        @Test(.timeLimit(.minutes(2)))
        func badCertificatesAndRolesAreRefused() throws {
            let box = Sandbox("certs")
            try box.makePKI(agents: 1)
            _ = try box.makeData(clients: 1)
            let (_, port) = try box.startCoordinator(["--max-duration", "60"])
            let database = box.file("data/client-01.sqlite")

            // A certificate from another CA: the handshake fails, the agent gives up with a clear error.
            let other = try box.run("/bin/bash", [Binaries.repoRoot + "/Certs/strata-pki.sh", "--dir", box.file("other"), "dev", "--agents", "1"])
            #expect(other.status == 0)
            let foreign = try box.run(Binaries.path("strata-agent"), box.agentArguments(
                port: port, id: "foreign", cert: box.file("other/agents/agent-01.crt"), key: box.file("other/agents/agent-01.key"),
                database: database, extra: ["--max-connect-attempts", "1"]), timeout: 60)
            #expect(foreign.status == 1)
            // Fatal at once (retrying with the same certificate cannot help), naming the alert and what to check.
            #expect(foreign.output.contains("the coordinator refused this agent's certificate") && foreign.output.contains("unknown_ca"), "\(foreign.output)")

            // An admin certificate may not pose as an agent.
            let admin = try box.run(Binaries.path("strata-agent"), box.agentArguments(
                port: port, id: "operator", cert: box.file("pki/admins/operator.crt"), key: box.file("pki/admins/operator.key"),
                database: database, extra: ["--max-connect-attempts", "1"]), timeout: 60)
            #expect(admin.status == 1)
            #expect(admin.output.contains("not-authorized"), "\(admin.output)")

            // openssl s_client without a client certificate, and one limited to TLS 1.2, cannot open a session.
            for flags in [["-tls1_3"], ["-tls1_2", "-cert", box.file("pki/agents/agent-01.crt"), "-key", box.file("pki/agents/agent-01.key")]] {
                let probe = try box.run("/bin/bash", ["-c", "printf 'STxx' | timeout 10 openssl s_client -connect 127.0.0.1:\(port) -CAfile \(box.file("pki/ca.crt")) \(flags.joined(separator: " ")) -ign_eof 2>&1"], timeout: 30)
                #expect(!probe.output.contains("welcome"))
                #expect(probe.output.contains("alert") || probe.output.contains("error") || probe.output.contains("errno"),
                        "s_client \(flags) output: \(probe.output.suffix(1500))")
            }
            let coordinatorLog = box.read("coordinator.log")
            #expect(coordinatorLog.contains("TLS handshake failed"))
            #expect(!coordinatorLog.contains("agent joined"))
        }

        @Test(.timeLimit(.minutes(2)))
        func malformedAndInvalidUpdatesAreRefusedWithReasons() async throws {
            let box = Sandbox("refusals")
            try box.makePKI(agents: 2)
            let (_, port) = try box.startCoordinator(["--max-duration", "60", "--buffer-size", "1", "--evaluate-every", "0"])
            let cert = box.file("pki/agents/agent-01.crt"), key = box.file("pki/agents/agent-01.key"), ca = box.file("pki/ca.crt")

            // Hello, then two bad updates for the first task (id 1 on a fresh coordinator): NaN, then a wrong shape.
            let hello = WireCodec.encode(.hello(Hello(agentVersion: "raw-test", featureCount: 60, trainSampleCount: 10, evalSampleCount: 2, pendingUpdateCount: 0)))
            var nanValues = [Float](repeating: 0, count: 600)
            nanValues[17] = .nan
            let nan = WireCodec.encode(.update(Update(taskID: 1, baseVersion: 0, sampleCount: 10, trainLoss: 1, evalSampleCount: 2, evalLoss: 1, evalAccuracy: 0.5, trainMillis: 1,
                                                      delta: [WireTensor(name: "weight", shape: [60, 10], values: nanValues), WireTensor(name: "bias", shape: [10], values: [Float](repeating: 0, count: 10))])))
            let wrongShape = WireCodec.encode(.update(Update(taskID: 1, baseVersion: 0, sampleCount: 10, trainLoss: 1, evalSampleCount: 2, evalLoss: 1, evalAccuracy: 0.5, trainMillis: 1,
                                                             delta: [WireTensor(name: "weight", shape: [59, 10], values: [Float](repeating: 0, count: 590))])))
            let client = try await RawClient.connect(port: port, cert: cert, key: key, ca: ca)
            let replies = try await client.exchange(send: [hello, nan, wrongShape]) { messages in
                messages.filter { if case .ack(let a) = $0 { a.status == .refused } else { false } }.count == 2
            }
            await client.shutdown()
            let refusals = replies.compactMap { message -> Ack? in if case .ack(let a) = message, a.status == .refused { a } else { nil } }
            #expect(replies.first.map { if case .welcome = $0 { true } else { false } } == true)
            #expect(refusals.map(\.code) == [.nonFiniteValue, .shapeMismatch])
            #expect(refusals.first?.reason.contains("index 17") == true)

            // Garbage instead of a frame: a typed error frame, then the connection closes.
            let garbageClient = try await RawClient.connect(port: port, cert: box.file("pki/agents/agent-02.crt"), key: box.file("pki/agents/agent-02.key"), ca: ca)
            let garbage = try await garbageClient.exchange(send: [ByteBuffer(string: "GET / HTTP/1.1\r\n\r\n")]) { messages in
                messages.contains { if case .error = $0 { true } else { false } }
            }
            await garbageClient.shutdown()
            #expect(garbage.contains { if case .error(let e) = $0 { e.code == .malformedFrame } else { false } })

            // The model never moved, and both refusals are recorded with their reasons.
            let db = try DatabaseQueue(path: box.file("coordinator.sqlite"))
            try await Task.sleep(for: .milliseconds(200))
            let maxVersion = try await db.read { try Int.fetchOne($0, sql: "SELECT MAX(version) FROM modelVersions") }
            let committed = try await db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM committedUpdates") }
            let codes = try await db.read { try Int.fetchAll($0, sql: "SELECT code FROM refusedUpdates ORDER BY id") }
            #expect(maxVersion == 0)
            #expect(committed == 0)
            #expect(codes == [101, 100])
        }
    }
}

extension Double {
    func rounded(toPlaces places: Int) -> Double {
        let factor = pow(10, Double(places))
        return (self * factor).rounded() / factor
    }
}
