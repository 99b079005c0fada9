import Foundation
import GRDB
import Testing

/// The real agent on a table as `sqlite3 .import` makes it from a CSV: every column TEXT, an id column, empty
/// fields. Flags as users type them; what the agent says at start; a federation that trains on it.
extension IntegrationSuite {
    @Suite(.serialized) struct AgentDataTests {
        /// `applicants("applicant_id" TEXT, "age" TEXT, "income" TEXT, "debt_ratio" TEXT, "member" TEXT, "risk" TEXT)`,
        /// income (in thousands) empty in every 7th row.
        static func csvTable(_ path: String, rows: Int, seed: Int) throws {
            let queue = try DatabaseQueue(path: path)
            try queue.write { db in
                try db.execute(sql: #"CREATE TABLE "applicants"("applicant_id" TEXT, "age" TEXT, "income" TEXT, "debt_ratio" TEXT, "member" TEXT, "risk" TEXT)"#)
                for i in 0..<rows {
                    let age = 20 + (i * 37 + seed * 11) % 50
                    let debt = Double((i * 53 + seed * 7) % 100) / 100
                    let income = i % 7 == 3 ? "" : " \(30 + (i * 29 + seed) % 90).5 "
                    let risk = debt > 0.5 ? "1" : "0"
                    try db.execute(sql: "INSERT INTO applicants VALUES (?, ?, ?, ?, ?, ?)",
                                   arguments: ["\(seed * 1000 + i + 1)", "\(age)", income, "\(debt)", i % 3 == 0 ? "Yes" : "no", risk])
                }
            }
        }

        @Test(.timeLimit(.minutes(3)))
        func aCSVImportTrainsWithTheFlagsUsersType() throws {
            let box = Sandbox("agent-data")
            try box.makePKI(agents: 2)
            for i in 1...2 { try Self.csvTable(box.file("client-\(i).sqlite"), rows: 200, seed: i) }
            let table = ["--table", "applicants", "--label-column", "risk"]

            // The id column is not taken silently: the agent stops before connecting and says what to pass.
            let refused = try box.run(Binaries.path("strata-agent"),
                                      box.agentArguments(port: 1, id: "agent-01", database: box.file("client-1.sqlite"), extra: table), timeout: 60)
            #expect(refused.status == 1, "\(refused.output)")
            #expect(refused.output.contains("column 'applicant_id': its name is an identifier's"), "\(refused.output)")
            #expect(refused.output.contains("--exclude-columns applicant_id or name the features yourself: --feature-columns age,income,debt_ratio,member"),
                    "\(refused.output)")
            // NULLs (empty fields) are refused by default, naming the row.
            let nulls = try box.run(Binaries.path("strata-agent"),
                                    box.agentArguments(port: 1, id: "agent-01", database: box.file("client-1.sqlite"),
                                                       extra: table + ["--exclude-columns", "applicant_id"]), timeout: 60)
            #expect(nulls.status == 1 && nulls.output.contains("row 4, column 'income' is NULL (or empty text)"), "\(nulls.output)")

            let (coordinator, port) = try box.startCoordinator(["--features", "4", "--classes", "2", "--max-duration", "12", "--evaluate-every", "0",
                                                                "--standardize", "on", "--statistics-agents", "2"])
            let flags = [["--exclude-columns", "applicant_id", "--null-policy", "impute"],
                         ["--feature-columns", "age,income", "--feature-columns", "debt_ratio,member", "--null-policy", "skip"]]
            var agents: [Process] = []
            for i in 1...2 {
                agents.append(try box.start(Binaries.path("strata-agent"),
                                            box.agentArguments(port: port, id: String(format: "agent-%02d", i), database: box.file("client-\(i).sqlite"),
                                                               extra: table + flags[i - 1]),
                                            log: "agent-\(i).log"))
            }
            try box.waitForExit(coordinator, timeout: 60)
            for agent in agents { try box.waitForExit(agent, timeout: 30) }
            for i in 1...2 {
                let log = box.read("agent-\(i).log")
                #expect(agents[i - 1].terminationStatus == 0, "\(log.suffix(2000))")
                #expect(log.contains("features (4, in model order): 1. age text numerals (TEXT); 2. income text numerals (TEXT), 29 missing; 3. debt_ratio text numerals (TEXT); 4. member boolean (TEXT)"),
                        "\(log.prefix(3000))")
                #expect(log.contains("label: risk, numeric (text numerals)"), "\(log.prefix(3000))")
            }
            let first = box.read("agent-1.log"), second = box.read("agent-2.log")
            #expect(first.contains("missing feature values are filled with the federated means once the coordinator sends them"), "\(first.prefix(3000))")
            #expect(first.contains("preprocessing received"), "\(first.prefix(3000))")
            #expect(box.read("coordinator.log").contains("preprocessing fixed"))
            #expect(first.contains("rows: 200 read, 29 missing values to impute"), "\(first.prefix(3000))")
            #expect(second.contains("rows: 200 read, 29 skipped (29 for a missing feature value)"), "\(second.prefix(3000))")
            #expect(coordinator.terminationStatus == 0, "\(box.read("coordinator.log").suffix(2000))")
            let db = try DatabaseQueue(path: box.file("coordinator.sqlite"))
            let contributors = try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(DISTINCT clientID) FROM committedUpdates") }
            #expect(contributors == 2)
        }
    }
}
