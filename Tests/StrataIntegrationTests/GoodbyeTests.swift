import Foundation
import Testing

/// When a federation ends, every connected agent is told so (goodbye) before the coordinator exits. Before,
/// the coordinator cancelled its sessions as it closed, and some agents lost their goodbye and retried a
/// coordinator that was gone (an agent with `--after-federation exit` then never exited).
extension IntegrationSuite {
    @Suite(.serialized) struct GoodbyeTests {
        @Test(.timeLimit(.minutes(5)))
        func everyAgentHearsThatTheFederationEnded() throws {
            let box = Sandbox("goodbye")
            let agentCount = 6
            try box.makePKI(agents: agentCount)
            _ = try box.makeData(clients: agentCount)
            for run in 1...6 {
                try? FileManager.default.removeItem(atPath: box.file("coordinator.addr"))   // the last run's port
                // --min-clients: every agent is connected before the federation can end (a later one would find no
                // coordinator at all, which no goodbye can tell it).
                let (coordinator, port) = try box.startCoordinator(["--max-versions", "3", "--buffer-size", "2", "--min-clients", "\(agentCount)",
                                                                    "--state", box.file("run-\(run).sqlite")])
                var agents: [Process] = []
                for i in 1...agentCount {
                    let id = String(format: "agent-%02d", i)
                    // Without its goodbye an agent gives up after 3 failed connections (exit 1) instead of retrying for ever.
                    agents.append(try box.start(Binaries.path("strata-agent"), box.agentArguments(
                        port: port, id: id, database: box.file(String(format: "data/client-%02d.sqlite", i)),
                        extra: ["--max-connect-attempts", "3", "--state", box.file("\(id)-\(run).state.sqlite")]), log: "\(id)-\(run).log"))
                }
                defer { for process in [coordinator] + agents where process.isRunning { process.terminate() } }
                try box.waitForExit(coordinator, timeout: 60)
                #expect(coordinator.terminationStatus == 0, "\(box.read("coordinator.log").suffix(2000))")
                for (i, agent) in agents.enumerated() {
                    try box.waitForExit(agent, timeout: 60)
                    let log = box.read(String(format: "agent-%02d-\(run).log", i + 1))
                    #expect(agent.terminationStatus == 0 && log.contains("federation finished"), "run \(run), agent \(i + 1):\n\(log.suffix(1500))")
                }
            }
        }
    }
}
