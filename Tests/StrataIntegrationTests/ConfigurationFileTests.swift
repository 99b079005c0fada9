import Foundation
import GRDB
import Testing

/// The coordinator and two agents run from settings files (`--config`), as the systemd units run them; the
/// command line overrides a file; `--print-config` says where each value came from; a broken file is refused
/// with its line.
extension IntegrationSuite {
    @Suite(.serialized) struct ConfigurationFileTests {
        @Test(.timeLimit(.minutes(4)))
        func aFederationRunsFromSettingsFiles() throws {
            let box = Sandbox("config-files")
            try box.makePKI(agents: 2)
            _ = try box.makeData(clients: 2)
            try """
                # coordinator.conf
                cert = \(box.file("pki/coordinator.crt"))
                key = \(box.file("pki/coordinator.key"))
                ca = \(box.file("pki/ca.crt"))
                state = \(box.file("coordinator.sqlite"))
                port = 0
                ready-file = \(box.file("coordinator.addr"))
                summary-file = \(box.file("summary.json"))
                no-admin = true
                no-metrics = true
                features = 60
                classes = 10
                statistics-agents = 2
                max-versions = 100   # the command line lowers it
                """.write(toFile: box.file("coordinator.conf"), atomically: true, encoding: .utf8)

            let printed = try box.run(Binaries.path("strata-coordinator"), ["--config", box.file("coordinator.conf"), "--max-versions", "4", "--print-config"])
            #expect(printed.status == 0, "\(printed.output)")
            let lines = printed.output.split(separator: "\n").map(String.init)
            #expect(lines.contains { $0.hasPrefix("max-versions = 4 ") && $0.hasSuffix("# command line") }, "\(printed.output)")
            #expect(lines.contains { $0.hasPrefix("features = 60 ") && $0.hasSuffix("coordinator.conf:11") }, "\(printed.output)")
            #expect(lines.contains { $0.hasPrefix("learning-rate = 0.01 ") && $0.hasSuffix("# default") }, "\(printed.output)")

            let coordinator = try box.start(Binaries.path("strata-coordinator"), ["--config", box.file("coordinator.conf"), "--max-versions", "4"],
                                            log: "coordinator.log")
            let address = try box.waitForFile("coordinator.addr", timeout: 30, while: coordinator)
            let port = try #require(Int(address.split(separator: "\n").first?.split(separator: " ").last ?? ""))
            var agents: [Process] = []
            for k in 1...2 {
                let id = String(format: "agent-%02d", k)
                try """
                    coordinator = 127.0.0.1:\(port)
                    server-name = localhost
                    cert = \(box.file("pki/agents/\(id).crt"))
                    key = \(box.file("pki/agents/\(id).key"))
                    ca = \(box.file("pki/ca.crt"))
                    database = \(box.file(String(format: "data/client-%02d.sqlite", k)))
                    state = \(box.file("\(id).state.sqlite"))
                    after-federation = exit
                    """.write(toFile: box.file("\(id).conf"), atomically: true, encoding: .utf8)
                agents.append(try box.start(Binaries.path("strata-agent"), ["--config", box.file("\(id).conf")], log: "\(id).log"))
            }
            defer { for process in [coordinator] + agents where process.isRunning { process.terminate() } }
            try box.waitForExit(coordinator, timeout: 120)
            #expect(coordinator.terminationStatus == 0, "\(box.read("coordinator.log").suffix(2000))")
            for agent in agents { try box.waitForExit(agent, timeout: 30); #expect(agent.terminationStatus == 0) }
            let summary = try JSONSerialization.jsonObject(with: Data(box.read("summary.json").utf8)) as! [String: Any]
            #expect(summary["finalVersion"] as? Int == 4, "\(summary)")
            let db = try DatabaseQueue(path: box.file("coordinator.sqlite"))
            #expect(try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(DISTINCT clientID) FROM committedUpdates") } == 2)

            // A broken file: exit 64, naming the file and the line.
            try "features = 60\nclasses 10\n".write(toFile: box.file("broken.conf"), atomically: true, encoding: .utf8)
            let broken = try box.run(Binaries.path("strata-coordinator"), ["--config", box.file("broken.conf")])
            #expect(broken.status == 64 && broken.output.contains("broken.conf: line 2"), "\(broken.output)")
            let missing = try box.run(Binaries.path("strata-agent"), ["--config", box.file("nowhere.conf")])
            #expect(missing.status == 64 && missing.output.contains("nowhere.conf"), "\(missing.output)")
        }
    }
}
