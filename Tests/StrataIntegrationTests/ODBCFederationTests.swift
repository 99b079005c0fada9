import Foundation
import GRDB
import StrataTestServers
import Testing

/// Agents reading PostgreSQL and MariaDB through ODBC next to one reading SQLite, over mutual TLS, with real
/// servers started for this suite (it fails, never skips, when they cannot be started: see
/// Tests/StrataTestServers). The password reaches each agent as an operator would give it: a file, or the
/// environment; the PostgreSQL agent names a DSN of its own odbc.ini.
extension IntegrationSuite {
    @Suite(.serialized, .databaseServers) struct ODBCFederationTests {
        /// The agent's flags with the data given by `data` (`--odbc …` or `--database …`).
        func arguments(_ box: Sandbox, port: Int, id: String, data: [String], extra: [String] = []) -> [String] {
            ["--coordinator", "127.0.0.1:\(port)", "--server-name", "localhost",
             "--cert", box.file("pki/agents/\(id).crt"), "--key", box.file("pki/agents/\(id).key"), "--ca", box.file("pki/ca.crt"),
             "--state", box.file("\(id).state.sqlite"), "--after-federation", "exit"] + data + extra
        }

        /// A DSN for the PostgreSQL server in an odbc.ini of the sandbox (ODBCINI points unixODBC at it).
        func writeDSN(_ box: Sandbox, _ server: DatabaseServer) throws {
            try """
                [strata-pg]
                Description = Strata test: PostgreSQL
                Driver = \(server.driver)
                Servername = 127.0.0.1
                Port = \(server.port)
                Database = \(server.database)

                """.write(toFile: box.file("odbc.ini"), atomically: true, encoding: .utf8)
        }

        func writePassword(_ box: Sandbox, _ password: String, name: String = "pg-password") throws -> String {
            let path = box.file(name)
            try (password + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
            return path
        }

        @Test(.timeLimit(.minutes(4)))
        func postgresMariaDBAndSQLiteAgentsTrainOneModel() throws {
            let servers = try DatabaseServers.required()
            let box = Sandbox("odbc-federation")
            try box.makePKI(agents: 3)
            let reference = try box.makeData(clients: 3)
            try servers.postgres.copyTable(fromSQLite: box.file("data/client-01.sqlite"), as: "visits")
            try servers.mariadb.copyTable(fromSQLite: box.file("data/client-02.sqlite"), as: "visits")
            try writeDSN(box, servers.postgres)
            let passwordFile = try writePassword(box, servers.postgres.readerPassword)

            let target = (reference - 0.05).rounded(toPlaces: 4)
            let (coordinator, port) = try box.startCoordinator(["--target-accuracy", "\(target)", "--min-evaluation-clients", "3",
                                                                "--max-duration", "150", "--standardize", "on", "--statistics-agents", "3"])
            let table = ["--table", "visits"]
            let agents = [
                try box.start(Binaries.path("strata-agent"),
                              arguments(box, port: port, id: "agent-01",
                                        data: ["--odbc", "DSN=strata-pg;UID=\(servers.postgres.readerUser)", "--odbc-password-file", passwordFile] + table),
                              log: "agent-01.log", environment: ["ODBCINI": box.file("odbc.ini")]),
                try box.start(Binaries.path("strata-agent"),
                              arguments(box, port: port, id: "agent-02", data: ["--odbc", servers.mariadb.connectionString()] + table),
                              log: "agent-02.log", environment: ["STRATA_ODBC_PASSWORD": servers.mariadb.readerPassword]),
                try box.start(Binaries.path("strata-agent"),
                              arguments(box, port: port, id: "agent-03", data: ["--database", box.file("data/client-03.sqlite")]),
                              log: "agent-03.log"),
            ]
            defer { for agent in agents where agent.isRunning { agent.terminate() } }
            try box.waitForExit(coordinator, timeout: 180)
            for agent in agents { try? box.waitForExit(agent, timeout: 30) }

            let logs = (1...3).map { box.read("agent-0\($0).log") }
            let summary = try JSONSerialization.jsonObject(with: Data(box.read("summary.json").utf8)) as? [String: Any] ?? [:]
            #expect(summary["targetReached"] as? Bool == true,
                    "coordinator:\n\(box.read("coordinator.log").suffix(3000))\nagents:\n\(logs.map { String($0.suffix(1500)) }.joined(separator: "\n---\n"))")
            #expect(logs[0].contains("database: PostgreSQL") && logs[0].contains("session read-only"), "\(logs[0].prefix(3000))")
            #expect(logs[1].contains("database: MariaDB") && logs[1].contains("session read-only"), "\(logs[1].prefix(3000))")
            for log in logs {
                #expect(log.contains("features (60, in model order): 1. x0 real"), "\(log.prefix(3000))")
                #expect(!log.contains(servers.postgres.readerPassword) && !log.contains("r3ad"), "a password in a log")
            }
            // Reading terminationStatus of a running process traps: an agent still running is a failure, not a crash.
            for (i, agent) in agents.enumerated() {
                #expect(agent.isRunning ? false : agent.terminationStatus == 0, "agent-0\(i + 1) (running: \(agent.isRunning)):\n\(logs[i].suffix(2000))")
            }

            let db = try DatabaseQueue(path: box.file("coordinator.sqlite"))
            let contributors = try db.read { try String.fetchAll($0, sql: "SELECT DISTINCT clientID FROM committedUpdates ORDER BY clientID") }
            #expect(contributors == ["agent-01", "agent-02", "agent-03"])
            // Each agent's accuracy on its own evaluation rows, for the last version all three evaluated.
            let perAgent = try db.read { db in
                try Row.fetchAll(db, sql: """
                    SELECT clientID, accuracy, sampleCount FROM evaluations WHERE modelVersion = (
                        SELECT modelVersion FROM evaluations GROUP BY modelVersion HAVING COUNT(DISTINCT clientID) = 3 ORDER BY modelVersion DESC LIMIT 1)
                    ORDER BY clientID
                    """)
            }
            #expect(perAgent.count == 3)
            // Every evaluation row of each client's database was read, whatever holds it.
            let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: box.file("data/manifest.json")))) as? [String: Any]
            let testRows = (manifest?["clients"] as? [[String: Any]] ?? []).compactMap { $0["test"] as? Int }
            #expect(perAgent.map { $0["sampleCount"] as Int } == testRows, "\(perAgent) vs \(testRows)")
            let sources = ["agent-01": "PostgreSQL", "agent-02": "MariaDB", "agent-03": "SQLite"]
            let line = perAgent.map { row -> String in
                let id: String = row["clientID"]
                let accuracy: Double = row["accuracy"]
                let samples: Int = row["sampleCount"]
                return "\(sources[id] ?? id) \(String(format: "%.3f", accuracy)) (\(samples) rows)"
            }.joined(separator: ", ")
            print("ODBC federation: target \(target), reached \(summary["bestAccuracy"] ?? summary["finalAccuracy"] ?? "?"); per agent: \(line)")
        }

        /// --refresh: rows inserted into the PostgreSQL table while the federation runs reach the agent, its log
        /// and the coordinator's client view (stratactl client) within seconds.
        @Test(.timeLimit(.minutes(3)))
        func rowsInsertedDuringARunArePickedUp() throws {
            let servers = try DatabaseServers.required()
            let box = Sandbox("odbc-refresh")
            try box.makePKI(agents: 1)
            _ = try box.makeData(clients: 1)
            let pg = servers.postgres
            try pg.copyTable(fromSQLite: box.file("data/client-01.sqlite"), as: "live")
            let sqlite = try DatabaseQueue(path: box.file("data/client-01.sqlite"))
            let (train, added) = try sqlite.read { db in
                (try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM samples WHERE split = 'train'") ?? 0,
                 try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM samples WHERE split = 'train' AND id % 2 = 0") ?? 0)
            }
            let (coordinator, port) = try box.startCoordinator(["--max-duration", "90", "--standardize", "on", "--statistics-agents", "1"])
            let agent = try box.start(Binaries.path("strata-agent"),
                                      arguments(box, port: port, id: "agent-01", data: ["--odbc", pg.connectionString(), "--table", "live", "--refresh", "1"]),
                                      log: "agent-01.log", environment: ["STRATA_ODBC_PASSWORD": pg.readerPassword])
            defer {
                if agent.isRunning { agent.terminate() }
                if coordinator.isRunning { coordinator.terminate() }
            }
            let adminPort = try box.endpointPort("admin")
            func client() throws -> String { try IntegrationSuite.AdminTests.ctl(box, adminPort: adminPort, ["client", "agent-01"]).output }
            try eventually("stratactl client shows the agent with \(train) training rows", timeout: 60) { try client().contains("\(train) training rows") }

            let columns = (0..<60).map { "x\($0)" }.joined(separator: ", ")
            try pg.execute("INSERT INTO live (id, \(columns), label, split) SELECT id + 1000000, \(columns), label, split FROM live WHERE split = 'train' AND id % 2 = 0;")
            try eventually("stratactl client shows \(train + added) training rows", timeout: 30) { try client().contains("\(train + added) training rows") }
            let log = box.read("agent-01.log")
            #expect(log.contains("data refreshed: reconnecting so that the coordinator sees the new rows"), "\(log.suffix(3000))")
            #expect(log.contains("\(train + added) training"), "\(log.suffix(3000))")
            #expect(agent.isRunning, "\(log.suffix(3000))")
            #expect(!log.contains("connection lost"), "a refresh is a planned reconnect: \(log.suffix(3000))")
        }

        /// What a data owner sees when the connection is wrong: the agent stops before connecting to the
        /// coordinator, says what to fix, and never prints the password.
        @Test(.timeLimit(.minutes(2)))
        func theAgentNamesWhatToFixWithoutThePassword() throws {
            let servers = try DatabaseServers.required()
            let box = Sandbox("odbc-errors")
            try box.makePKI(agents: 1)
            _ = try box.makeData(clients: 1)
            let pg = servers.postgres
            try pg.copyTable(fromSQLite: box.file("data/client-01.sqlite"), as: "visits")
            let agent = Binaries.path("strata-agent")

            let wrong = "not-the-Passw0rd"
            let badPassword = try box.run(agent, arguments(box, port: 1, id: "agent-01",
                                                           data: ["--odbc", pg.connectionString(), "--odbc-password-file", try writePassword(box, wrong, name: "wrong"),
                                                                  "--table", "visits"]), timeout: 60)
            #expect(badPassword.status == 1, "\(badPassword.output)")
            #expect(badPassword.output.contains("the database server refused the credentials of --odbc \"\(pg.connectionString())\""), "\(badPassword.output)")
            #expect(badPassword.output.contains("--odbc-password-file or STRATA_ODBC_PASSWORD (the password is not shown)"), "\(badPassword.output)")
            #expect(!badPassword.output.contains(wrong), "\(badPassword.output)")

            let fromEnvironment = try box.run(agent, arguments(box, port: 1, id: "agent-01", data: ["--odbc", servers.mariadb.connectionString(), "--table", "visits"]),
                                              timeout: 60, environment: ["STRATA_ODBC_PASSWORD": wrong])
            #expect(fromEnvironment.status == 1 && fromEnvironment.output.contains("refused the credentials"), "\(fromEnvironment.output)")
            #expect(!fromEnvironment.output.contains(wrong), "\(fromEnvironment.output)")

            let missingTable = try box.run(agent, arguments(box, port: 1, id: "agent-01", data: ["--odbc", pg.connectionString(), "--table", "vists"]),
                                           timeout: 60, environment: ["STRATA_ODBC_PASSWORD": pg.readerPassword])
            #expect(missingTable.status == 1, "\(missingTable.output)")
            // (The suite's other tests may have made tables of their own on the same server.)
            let listed = missingTable.output.components(separatedBy: "table 'vists' not found; tables in the database: ").dropFirst().first?
                .components(separatedBy: ". Set --table, or use --query").first?.components(separatedBy: ", ") ?? []
            #expect(listed.contains("visits"), "\(missingTable.output)")

            // A password on the command line is refused before anything runs.
            let onTheCommandLine = try box.run(agent, arguments(box, port: 1, id: "agent-01", data: ["--odbc", pg.connectionString() + ";PWD=\(wrong)"]), timeout: 60)
            #expect(onTheCommandLine.status != 0 && onTheCommandLine.output.contains("--odbc holds a password (PWD=…)"), "\(onTheCommandLine.output)")
            #expect(!onTheCommandLine.output.contains(wrong), "\(onTheCommandLine.output)")
            let both = try box.run(agent, arguments(box, port: 1, id: "agent-01", data: ["--odbc", pg.connectionString(), "--database", "x.sqlite"]), timeout: 60)
            #expect(both.status != 0 && both.output.contains("--database and --odbc both name the data"), "\(both.output)")
        }
    }
}
