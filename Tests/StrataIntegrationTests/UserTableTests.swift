import Foundation
import GRDB
import Testing

/// A user's own table: columns on scales from 1e-3 to 1e6 with offsets, the way a real database holds
/// incomes, ratios and counts. With the statistics phase (the default) it trains like the scaled data; with
/// `--standardize off` the same federation does not get there.
extension IntegrationSuite {
    @Suite(.serialized) struct UserTableTests {
        /// Rescales every feature column of a strata-datagen database in place: x_j · s_j + o_j.
        static func unscale(_ path: String) throws {
            let db = try DatabaseQueue(path: path)
            try db.write { db in
                let assignments = (0..<60).map { j -> String in
                    let scale = [1e-3, 1.0, 1e3, 1e6][j % 4]
                    let offset = [0.0, 50.0, 1e5, 0.0][j % 4]
                    return "x\(j) = x\(j) * \(scale) + \(offset)"
                }
                try db.execute(sql: "UPDATE samples SET " + assignments.joined(separator: ", "))
            }
        }

        func run(standardize: Bool, box: Sandbox, target: Double, seconds: Int) throws -> [String: Any] {
            let (coordinator, port) = try box.startCoordinator(["--target-accuracy", "\(target)", "--min-evaluation-clients", "3",
                                                                "--max-duration", "\(seconds)", "--standardize", standardize ? "on" : "off",
                                                                "--statistics-agents", "3"])
            var agents: [Process] = []
            for i in 1...3 {
                let id = String(format: "agent-%02d", i)
                agents.append(try box.start(Binaries.path("strata-agent"),
                                            box.agentArguments(port: port, id: id, database: box.file(String(format: "data/client-%02d.sqlite", i))),
                                            log: "\(id).log"))
            }
            defer { for agent in agents where agent.isRunning { agent.terminate() } }
            try box.waitForExit(coordinator, timeout: Double(seconds + 30))
            for agent in agents { try? box.waitForExit(agent, timeout: 30) }
            return try JSONSerialization.jsonObject(with: Data(box.read("summary.json").utf8)) as! [String: Any]
        }

        @Test(.timeLimit(.minutes(5)))
        func anUnscaledTableTrainsOnceStandardised() throws {
            let box = Sandbox("user-table")
            try box.makePKI(agents: 3)
            let reference = try box.makeData(clients: 3)
            for i in 1...3 { try Self.unscale(box.file(String(format: "data/client-%02d.sqlite", i))) }
            let target = (reference - 0.05).rounded(toPlaces: 4)

            let summary = try run(standardize: true, box: box, target: target, seconds: 120)
            #expect(summary["targetReached"] as? Bool == true, "coordinator log:\n\(box.read("coordinator.log").suffix(3000))")
            let log = box.read("coordinator.log")
            #expect(log.contains("preprocessing fixed"))
            #expect(log.contains("x3(mean"))  // the columns used, by name, with their moments
            let db = try DatabaseQueue(path: box.file("coordinator.sqlite"))
            let stored = try db.read { try String.fetchOne($0, sql: "SELECT value FROM meta WHERE key = 'preprocessing'") }
            let preprocessing = try #require(stored.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] })
            let features = try #require(preprocessing["features"] as? [[String: Double]])
            #expect(features.count == 60)
            // Column 3 was multiplied by 1e6: its scale is in the hundreds of thousands at least.
            #expect((features[3]["scale"] ?? 0) > 1e5)
            #expect((preprocessing["featureNames"] as? [String])?.first == "x0")
        }

        @Test(.timeLimit(.minutes(3)))
        func theSameTableWithoutStandardisationDoesNotGetThere() throws {
            let box = Sandbox("user-table-off")
            try box.makePKI(agents: 3)
            let reference = try box.makeData(clients: 3)
            for i in 1...3 { try Self.unscale(box.file(String(format: "data/client-%02d.sqlite", i))) }
            let summary = try run(standardize: false, box: box, target: (reference - 0.05).rounded(toPlaces: 4), seconds: 25)
            #expect(summary["targetReached"] as? Bool == false)
            #expect(!box.read("coordinator.log").contains("preprocessing fixed"))
        }
    
        /// Text labels ('class-0' … 'class-9') in their own table: numbered through the federation's
        /// vocabulary, gathered in the statistics phase, and the federation trains as with numbers.
        @Test(.timeLimit(.minutes(5)))
        func textLabelsTrainThroughTheFederationsVocabulary() throws {
            let box = Sandbox("user-table-labels")
            try box.makePKI(agents: 3)
            let reference = try box.makeData(clients: 3)
            for i in 1...3 {
                let db = try DatabaseQueue(path: box.file(String(format: "data/client-%02d.sqlite", i)))
                try db.write { db in
                    let columns = (0..<60).map { "x\($0)" }.joined(separator: ", ")
                    try db.execute(sql: "CREATE TABLE applicants AS SELECT id AS applicant, \(columns), 'class-' || label AS outcome, split FROM samples")
                }
            }
            let target = (reference - 0.05).rounded(toPlaces: 4)
            let (coordinator, port) = try box.startCoordinator(["--target-accuracy", "\(target)", "--min-evaluation-clients", "3",
                                                                "--max-duration", "120", "--standardize", "on", "--statistics-agents", "3"])
            var agents: [Process] = []
            for i in 1...3 {
                let id = String(format: "agent-%02d", i)
                agents.append(try box.start(Binaries.path("strata-agent"),
                                            box.agentArguments(port: port, id: id, database: box.file(String(format: "data/client-%02d.sqlite", i)),
                                                               extra: ["--table", "applicants", "--label-column", "outcome", "--exclude-columns", "applicant"]),
                                            log: "\(id).log"))
            }
            defer { for agent in agents where agent.isRunning { agent.terminate() } }
            try box.waitForExit(coordinator, timeout: 150)
            let summary = try JSONSerialization.jsonObject(with: Data(box.read("summary.json").utf8)) as! [String: Any]
            #expect(summary["targetReached"] as? Bool == true, "coordinator log:\n\(box.read("coordinator.log").suffix(3000))\nagent:\n\(box.read("agent-01.log").suffix(2000))")
            let log = box.read("coordinator.log")
            #expect(log.contains("labels=class-"))  // the sorted union of the agents' labels
            // With fewer distinct labels than --classes (10) the operator is told to set --classes.
            let fixed = try #require(log.split(separator: "\n").first { $0.contains("preprocessing fixed") })
            let labels = try #require(fixed.split(separator: " ").first { $0.hasPrefix("labels=") })
            let count = labels.dropFirst("labels=".count).split(separator: ",").count
            #expect(log.contains("fewer labels than classes") == (count < 10), "\(count) labels")
        }
    }
}
