import Foundation
import GRDB
import Testing

/// The data owner's own training code as the federation's trainer: four agents hand their tasks to the
/// Python kit's scikit-learn MLP (`--trainer-command`, docs/PROTOCOL.md §11), over mutual TLS, on two rings no
/// linear model separates. One trainer process and the coordinator are SIGKILLed during the run: the failed
/// task is reported and the trainer restarted, the coordinator resumes from its state, and every update is
/// committed at most once, in the version its ack named.
extension IntegrationSuite {
    @Suite(.serialized) struct TrainerProcessFederationTests {
        static let example = Binaries.repoRoot + "/Clients/python/examples/sklearn_mlp.py"

        /// Alive and not a zombie (an orphan's zombie waits for whoever reaps orphans here).
        static func running(_ pid: Int32) -> Bool {
            guard kill(pid, 0) == 0, let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { return false }
            return !stat[close...].hasPrefix(") Z")
        }

        @Test(.timeLimit(.minutes(6)))
        func fourAgentsTrainAScikitLearnMLPThroughTheKitAndSurviveKills() throws {
            let box = Sandbox("trainer-process")
            try box.makePKI(agents: 4)
            try FileManager.default.createDirectory(atPath: box.file("data"), withIntermediateDirectories: true)
            for k in 1...4 { try MLPFederationTests.writeRings(box.file("data/rings-\(k).sqlite"), agent: k, rows: 400) }
            let written = try box.run("/usr/bin/env", ["python3", Self.example, "--write-initial-model", box.file("model.npz"),
                                                       "--features", "2", "--classes", "2", "--hidden", "16,16"])
            try #require(written.status == 0, "\(written.output)")

            let port = try ChaosTests.freeLoopbackPort()
            var incarnation = 0
            func startCoordinator() throws -> Process {
                incarnation += 1
                try? FileManager.default.removeItem(atPath: box.file("coordinator.addr"))
                let process = try box.start(Binaries.path("strata-coordinator"), [
                    "--cert", box.file("pki/coordinator.crt"), "--key", box.file("pki/coordinator.key"), "--ca", box.file("pki/ca.crt"),
                    "--state", box.file("coordinator.sqlite"), "--port", "\(port)", "--ready-file", box.file("coordinator.addr"),
                    "--admin-port", "0", "--metrics-port", "0", "--summary-file", box.file("summary.json"),
                    "--model", "custom", "--initial-model", box.file("model.npz"), "--features", "2", "--classes", "2",
                    "--standardize", "on", "--statistics-agents", "4", "--min-evaluation-clients", "4",
                    "--target-metric", "accuracy", "--target", "0.95", "--learning-rate", "0.001", "--local-epochs", "1", "--max-duration", "200",
                ], log: "coordinator-\(incarnation).log")
                _ = try box.waitForFile("coordinator.addr", timeout: 30, while: process)
                return process
            }
            var coordinator = try startCoordinator()
            var agents: [Process] = []
            for k in 1...4 {
                let id = String(format: "agent-%02d", k)
                agents.append(try box.start(Binaries.path("strata-agent"), box.agentArguments(
                    port: port, id: id, database: box.file("data/rings-\(k).sqlite"),
                    extra: ["--trainer-command", "exec python3 \(Self.example)", "--trainer-timeout", "60"]), log: "\(id).log"))
            }
            defer { for process in [coordinator] + agents where process.isRunning { process.terminate() } }

            let db = try box.observe("coordinator.sqlite")
            func latestVersion() throws -> Int64 { try db.read { try Int64.fetchOne($0, sql: "SELECT MAX(version) FROM modelVersions") ?? 0 } }
            func eventually(_ what: String, timeout: Double = 90, _ condition: () throws -> Bool) throws {
                let deadline = Date().addingTimeInterval(timeout)
                while Date() < deadline {
                    guard coordinator.isRunning else {
                        throw HarnessError.exited("coordinator exited while waiting for \(what):\n\(box.read("coordinator-\(incarnation).log").suffix(3000))")
                    }
                    if try condition() { return }
                    Thread.sleep(forTimeInterval: 0.05)
                }
                throw HarnessError.timeout("waited \(Int(timeout)) s for: \(what)\n\(box.read("agent-02.log").suffix(2000))")
            }
            /// The pids of agent-02's trainer processes, from its log ("trainer started pid=…").
            func trainerPIDs() -> [Int32] {
                box.read("agent-02.log").split(separator: "\n").filter { $0.contains("trainer started") }.compactMap { line in
                    line.split(separator: " ").first { $0.hasPrefix("pid=") }.flatMap { Int32($0.dropFirst(4)) }
                }
            }

            // (1) A trainer killed mid-run: its agent reports the task, restarts it, and goes on.
            try eventually("version 1") { try latestVersion() >= 1 }
            let first = try #require(trainerPIDs().last, "agent-02 logged no trainer start:\n\(box.read("agent-02.log").suffix(2000))")
            kill(first, SIGKILL)
            try eventually("agent-02's trainer restarted") { trainerPIDs().count >= 2 }
            #expect(box.read("agent-02.log").contains("trainer failed"))

            // (2) The coordinator killed and restarted on its state, on the same port.
            try eventually("version 3") { try latestVersion() >= 3 }
            kill(coordinator.processIdentifier, SIGKILL)
            try box.waitForExit(coordinator, timeout: 10)
            let durable = try latestVersion()
            coordinator = try startCoordinator()
            #expect(box.read("coordinator-2.log").contains("state: version \(durable),"))

            try box.waitForExit(coordinator, timeout: 220)
            let log = "coordinator log:\n\(box.read("coordinator-2.log").suffix(3000))\nagent-02:\n\(box.read("agent-02.log").suffix(2000))"
            #expect(coordinator.terminationStatus == 0, "\(log)")
            let summary = try JSONSerialization.jsonObject(with: Data(box.read("summary.json").utf8)) as! [String: Any]
            #expect(summary["targetReached"] as? Bool == true, "\(summary)\n\(log)")
            #expect((summary["bestAccuracy"] as? Double ?? 0) >= 0.95, "\(summary)")
            // The kit's scikit-learn example sends its model's outputs: the agents compute the evaluation statistics
            // (option 2) and the coordinator pools F1 and AUC from them.
            let last = try #require(summary["lastEvaluation"] as? [String: Any], "\(summary)")
            #expect((last["statisticsClients"] as? Int ?? 0) >= 1, "\(last)")
            let pooled = last["metrics"] as? [String: Double] ?? [:]
            #expect((pooled["auc"] ?? 0) > 0.9 && (pooled["macro-f1"] ?? 0) > 0.9, "\(last)")
            let failures = (1...incarnation).map { box.read("coordinator-\($0).log") }.joined().components(separatedBy: "code=task-failed").count - 1
            #expect(failures >= 1, "the killed trainer's task was never reported failed")
            for agent in agents {
                agent.terminate()
                try box.waitForExit(agent, timeout: 30)
            }

            // Exactly once: no task twice, and every committed ack an agent holds names the version that holds it.
            let duplicates = try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) - COUNT(DISTINCT taskID) FROM committedUpdates") }
            #expect(duplicates == 0)
            var acknowledged = 0
            for k in 1...4 {
                let id = String(format: "agent-%02d", k)
                let state = try box.observe("\(id).state.sqlite")
                let acks = try state.read { db in
                    try Row.fetchAll(db, sql: "SELECT taskID, modelVersion FROM acknowledged WHERE status = 'committed'").map {
                        (task: $0["taskID"] as Int64, version: $0["modelVersion"] as Int64)
                    }
                }
                acknowledged += acks.count
                for ack in acks {
                    let versions = try db.read { try Int64.fetchAll($0, sql: "SELECT version FROM committedUpdates WHERE taskID = ? AND clientID = ?", arguments: [ack.task, id]) }
                    #expect(versions == [ack.version], "\(id): task \(ack.task) acknowledged in version \(ack.version), committed in \(versions)")
                }
                // The trainer exits with its agent.
                #expect(!box.read("\(id).log").contains("trainer stopped how=killed"), "\(id)'s trainer had to be killed at the end")
            }
            #expect(acknowledged > 0)
            // A stopped agent takes its trainer with it (SIGTERM: the agent kills the trainer's process group).
            for pid in trainerPIDs() { #expect(!Self.running(pid), "trainer \(pid) outlived its agent") }
        }
    }
}
