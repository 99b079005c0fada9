import Foundation
import GRDB
import Testing

/// A long-running agent outlives a federation: when the coordinator ends one, the agent (default
/// `--after-federation wait`) stays up and joins the next federation on the same address, which it recognises
/// as a new one by its id.
extension IntegrationSuite {
    @Suite(.serialized) struct NextFederationTests {
        @Test(.timeLimit(.minutes(4)))
        func anAgentWaitsForTheNextFederationAndJoinsIt() throws {
            let box = Sandbox("next-federation")
            try box.makePKI(agents: 1)
            _ = try box.makeData(clients: 1)
            let port = try ChaosTests.freeLoopbackPort()
            func startCoordinator(_ name: String) throws -> Process {
                try? FileManager.default.removeItem(atPath: box.file("coordinator.addr"))
                let process = try box.start(Binaries.path("strata-coordinator"), [
                    "--cert", box.file("pki/coordinator.crt"), "--key", box.file("pki/coordinator.key"), "--ca", box.file("pki/ca.crt"),
                    "--state", box.file("\(name).sqlite"), "--port", "\(port)", "--ready-file", box.file("coordinator.addr"),
                    "--admin-port", "0", "--metrics-port", "0", "--features", "60", "--classes", "10",
                    "--standardize", "off", "--buffer-size", "1", "--max-versions", "3"], log: "\(name).log")
                _ = try box.waitForFile("coordinator.addr", timeout: 30, while: process)
                return process
            }
            var arguments = box.agentArguments(port: port, id: "agent-01", database: box.file("data/client-01.sqlite"))
            if let at = arguments.firstIndex(of: "--after-federation") { arguments.removeSubrange(at...at + 1) }   // the default: wait
            let first = try startCoordinator("first")
            let agent = try box.start(Binaries.path("strata-agent"), arguments + ["--next-federation-poll", "0.5"], log: "agent-01.log")
            defer { for process in [first, agent] where process.isRunning { process.terminate() } }

            try box.waitForExit(first, timeout: 60)
            #expect(first.terminationStatus == 0, "\(box.read("first.log").suffix(2000))")
            // Still running, and says why, while no coordinator is there.
            let deadline = Date().addingTimeInterval(20)
            while !box.read("agent-01.log").contains("waiting for the next one"), Date() < deadline { Thread.sleep(forTimeInterval: 0.1) }
            Thread.sleep(forTimeInterval: 1.5)   // a few polls against a closed port
            #expect(agent.isRunning, "the agent exited after the federation:\n\(box.read("agent-01.log").suffix(2000))")
            #expect(box.read("agent-01.log").contains("waiting for the next one"))
            #expect(!box.read("agent-01.log").contains("connection lost; reconnecting attempt=2"), "a missing coordinator between federations is not a failure")

            // The next federation: a new state database on the same address. The agent joins and trains.
            let second = try startCoordinator("second")
            defer { if second.isRunning { second.terminate() } }
            try box.waitForExit(second, timeout: 60)
            #expect(second.terminationStatus == 0, "\(box.read("second.log").suffix(2000))")
            let db = try DatabaseQueue(path: box.file("second.sqlite"))
            let contributed = try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM committedUpdates WHERE clientID = 'agent-01'") ?? 0 }
            #expect(contributed >= 3, "\(box.read("agent-01.log").suffix(2000))")
            #expect(box.read("agent-01.log").contains("the coordinator runs a new federation"))
            #expect(agent.isRunning)
        }
    }
}
