import Foundation
import GRDB
import NIOCore
import NIOPosix
import Testing
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A short chaos run (Deploy/chaos.py is the long one): the coordinator and agents are SIGKILLed and
/// restarted on their state, at moments chosen from the coordinator's durable state (after N more
/// committed versions), never from a clock. Afterwards exactly-once is checked from the SQLite files alone.
extension IntegrationSuite {
    @Suite(.serialized) struct ChaosTests {
        /// The same chaos for the linear default and the built-in MLP: exactly-once does not depend on the model.
        @Test(.timeLimit(.minutes(4)), arguments: [[String](), ["--model", "mlp", "--hidden", "16"]])
        func exactlyOnceAcrossCoordinatorAndAgentKills(model: [String]) throws {
            let box = Sandbox("chaos")
            let agentCount = 6
            try box.makePKI(agents: agentCount)
            let data = try box.run(Binaries.path("strata-datagen"), ["--out", box.file("data"), "--clients", "\(agentCount)", "--seed", "5", "--max-samples", "150"])
            try #require(data.status == 0, "\(data.output)")
            // One port for every incarnation: the agents reconnect to the address they were given.
            let port = try ChaosTests.freeLoopbackPort()

            var incarnation = 0
            func startCoordinator() throws -> Process {
                incarnation += 1
                try? FileManager.default.removeItem(atPath: box.file("coordinator.addr"))
                let process = try box.start(Binaries.path("strata-coordinator"), [
                    "--cert", box.file("pki/coordinator.crt"), "--key", box.file("pki/coordinator.key"), "--ca", box.file("pki/ca.crt"),
                    "--state", box.file("coordinator.sqlite"), "--port", "\(port)", "--ready-file", box.file("coordinator.addr"), "--admin-port", "0", "--metrics-port", "0",
                    "--features", "60", "--classes", "10", "--mode", "strata", "--buffer-size", "3", "--buffer-timeout", "2",
                    "--evaluate-every", "0", "--max-duration", "200",
                ] + model, log: "coordinator-\(incarnation).log")
                _ = try box.waitForFile("coordinator.addr", timeout: 30, while: process)
                return process
            }
            var starts: [Int: Int] = [:]
            func startAgent(_ i: Int) throws -> Process {
                starts[i, default: 0] += 1
                let id = String(format: "agent-%02d", i)
                return try box.start(Binaries.path("strata-agent"),
                                     box.agentArguments(port: port, id: id, database: box.file(String(format: "data/client-%02d.sqlite", i))),
                                     log: "\(id)-\(starts[i]!).log")
            }
            func sigkill(_ process: Process) throws {
                kill(process.processIdentifier, SIGKILL)
                try box.waitForExit(process, timeout: 10)
                #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL)
            }

            var coordinator = try startCoordinator()
            var agents: [Int: Process] = [:]
            for i in 1...agentCount { agents[i] = try startAgent(i) }
            defer {
                for process in [coordinator] + Array(agents.values) where process.isRunning { process.terminate() }
            }

            let db = try box.observe("coordinator.sqlite")
            let storedModel = try db.read { try String.fetchOne($0, sql: "SELECT value FROM meta WHERE key = 'model'") }
            #expect(storedModel == (model.isEmpty ? "softmax:60x10" : "mlp:60x10:relu:16"))
            func latestVersion() throws -> Int64 {
                try db.read { try Int64.fetchOne($0, sql: "SELECT MAX(version) FROM modelVersions") ?? 0 }
            }
            /// Polls until `condition` holds; fails at once if the coordinator died, and after `timeout` seconds.
            func eventually(_ what: String, timeout: Double = 60, _ condition: () throws -> Bool) throws {
                let deadline = Date().addingTimeInterval(timeout)
                while Date() < deadline {
                    guard coordinator.isRunning else {
                        throw HarnessError.exited("coordinator #\(incarnation) exited (status \(coordinator.terminationStatus)) while waiting for \(what):\n"
                                                  + box.read("coordinator-\(incarnation).log").suffix(3000))
                    }
                    if try condition() { return }
                    Thread.sleep(forTimeInterval: 0.05)
                }
                throw HarnessError.timeout("waited \(Int(timeout)) s for: \(what)")
            }
            func contributorsSince(_ time: Double) throws -> Set<String> {
                try db.read { Set(try String.fetchAll($0, sql: "SELECT DISTINCT clientID FROM committedUpdates WHERE receivedAt > ?", arguments: [time])) }
            }
            /// Waits until `more` further versions are durable and every agent had an update committed since the
            /// last restart (all of them are back in), so each kill hits a federation at full strength.
            var lastRestart = Date().timeIntervalSince1970
            func waitForProgress(_ more: Int64) throws {
                let base = try latestVersion()
                try eventually("\(more) versions after \(base), with an update of every agent since the last restart") {
                    try latestVersion() >= base + more && contributorsSince(lastRestart).count == agentCount
                }
            }
            /// Kills the coordinator; restarts it on the same state and port, and checks that it resumed from
            /// the last durable version.
            var coordinatorKills: [Double] = []
            func killAndRestartCoordinator(after more: Int64, whileDown: () throws -> Void = {}) throws {
                try waitForProgress(more)
                try sigkill(coordinator)
                coordinatorKills.append(Date().timeIntervalSince1970)
                let durable = try latestVersion()
                try whileDown()
                coordinator = try startCoordinator()
                lastRestart = Date().timeIntervalSince1970
                let restored = box.read("coordinator-\(incarnation).log")
                #expect(restored.contains("state: version \(durable),"), "restart \(incarnation) did not resume from version \(durable):\n\(restored.prefix(2000))")
            }
            func killAndRestartAgent(_ i: Int, after more: Int64) throws {
                try waitForProgress(more)
                try sigkill(agents[i]!)
                agents[i] = try startAgent(i)
                lastRestart = Date().timeIntervalSince1970
            }

            // The chaos: 2 coordinator kills and 3 agent kills, one of them while the coordinator is down.
            try killAndRestartCoordinator(after: 3)
            try killAndRestartAgent(2, after: 3)
            try killAndRestartCoordinator(after: 3) {
                try sigkill(agents[5]!)
                agents[5] = try startAgent(5)   // it finds no coordinator and must keep retrying
            }
            try killAndRestartAgent(4, after: 3)

            // Versions keep being committed after the last restart, with every agent back in.
            try waitForProgress(5)

            // Stop: SIGTERM drains the coordinator (exit 0); then the agents.
            coordinator.terminate()
            try box.waitForExit(coordinator, timeout: 30)
            #expect(coordinator.terminationStatus == 0, "coordinator log:\n\(box.read("coordinator-\(incarnation).log").suffix(2000))")
            for agent in agents.values {
                agent.terminate()
                try box.waitForExit(agent, timeout: 30)
            }

            // Exactly once, from the SQLite files alone.
            let committed = try db.read { db in
                try Row.fetchAll(db, sql: "SELECT taskID, version, clientID FROM committedUpdates").map {
                    (task: $0["taskID"] as Int64, version: $0["version"] as Int64, client: $0["clientID"] as String)
                }
            }
            let byTask = Dictionary(grouping: committed, by: \.task)
            // (1) Every update an agent holds as committed is in committedUpdates once, in the version its ack named.
            var acknowledged = 0
            for i in 1...agentCount {
                let id = String(format: "agent-%02d", i)
                let state = try box.observe("\(id).state.sqlite")
                let acks = try state.read { db in
                    try Row.fetchAll(db, sql: "SELECT taskID, modelVersion FROM acknowledged WHERE status = 'committed'").map {
                        (task: $0["taskID"] as Int64, version: $0["modelVersion"] as Int64)
                    }
                }
                #expect(!acks.isEmpty, "\(id) holds no committed ack")
                acknowledged += acks.count
                for ack in acks {
                    let rows = byTask[ack.task] ?? []
                    #expect(rows.count == 1, "\(id): task \(ack.task) acknowledged as committed is in committedUpdates \(rows.count) times")
                    #expect(rows.first?.version == ack.version, "\(id): task \(ack.task) acknowledged in version \(ack.version), committed in \(rows.first.map { "\($0.version)" } ?? "none")")
                    #expect(rows.first?.client == id, "\(id): task \(ack.task) committed for \(rows.first?.client ?? "nobody")")
                }
            }
            // (2) No task id twice.
            let (total, distinct) = try db.read { db -> (Int, Int) in
                let row = try Row.fetchOne(db, sql: "SELECT COUNT(*) AS total, COUNT(DISTINCT taskID) AS tasks FROM committedUpdates")!
                return (row["total"], row["tasks"])
            }
            #expect(total == distinct, "\(total - distinct) task ids committed more than once")
            #expect(acknowledged <= total)
            // (3) Versions exactly 0...max; each committed update names an existing version, which counts it.
            let versions = try db.read { try Int64.fetchAll($0, sql: "SELECT version FROM modelVersions ORDER BY version") }
            #expect(versions == Array(0...(versions.last ?? 0)))
            let orphans = try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM committedUpdates WHERE version NOT IN (SELECT version FROM modelVersions)") }
            #expect(orphans == 0)
            let miscounted = try db.read { try Int.fetchOne($0, sql: """
                SELECT COUNT(*) FROM modelVersions m WHERE m.updateCount != (SELECT COUNT(*) FROM committedUpdates c WHERE c.version = m.version)
                """) }
            #expect(miscounted == 0)
            // (4) Versions kept being committed after the last restart (waited for above, confirmed from the final state).
            let after = try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM modelVersions WHERE createdAt > ?", arguments: [lastRestart]) ?? 0 }
            #expect(after >= 5)
            // (5) The crashes were real: updates handed out by a killed coordinator were committed by a later one.
            var carried = 0
            for killedAt in coordinatorKills {
                carried += try db.read { try Int.fetchOne($0, sql: """
                    SELECT COUNT(*) FROM committedUpdates c JOIN tasks t ON t.id = c.taskID WHERE t.dispatchedAt < ? AND c.receivedAt > ?
                    """, arguments: [killedAt, killedAt]) ?? 0 }
            }
            #expect(carried > 0, "no update outlived a coordinator kill")
            #expect(incarnation == 3)
            // (6) Each coordinator kill starts a new outage for the agents that lived through both: their
            // reconnect backoff starts again at its first step (attempt 1), it does not go on from the last outage.
            for id in ["agent-01-1", "agent-03-1", "agent-04-1", "agent-06-1"] {
                let log = box.read("\(id).log")
                let firstAttempts = log.components(separatedBy: "connection lost; reconnecting attempt=1 ").count - 1
                let reconnects = log.split(separator: "\n").filter { $0.contains("reconnecting") }.joined(separator: "\n")
                #expect(firstAttempts >= 2, "\(id): \(firstAttempts) outages started at attempt 1, expected one per coordinator kill:\n\(reconnects)")
            }
        }

        /// A free loopback port, preferably below the ephemeral range (no agent's outgoing connection can take
        /// it while the coordinator is down); bound and released.
        static func freeLoopbackPort() throws -> Int {
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            defer { try? group.syncShutdownGracefully() }
            for candidate in (0..<20).map({ _ in Int.random(in: 20000..<32768) }) + [0] {
                guard let channel = try? ServerBootstrap(group: group).bind(host: "127.0.0.1", port: candidate).wait() else { continue }
                let port = channel.localAddress?.port
                try? channel.close().wait()
                if let port { return port }
            }
            throw HarnessError.exited("no free loopback port")
        }
    }
}
