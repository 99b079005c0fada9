import Foundation
import GRDB
import Testing

/// `strata-datagen import-csv` as a data owner runs it: the report on stdout, and the `strata-agent` flags it
/// suggests read the table as intended.
extension IntegrationSuite {
    @Suite(.serialized) struct CSVImportCommandTests {
        static let csv = """
            applicant_id,age,income,member,city,label\r
            1001,34, 52000.50 ,yes,Lyon,approved\r
            1002,41,,no,"Paris, 11e",declined\r
            1003,29,61000,TRUE,Lyon,approved\r
            1004,52,39000,f,"Saint-\r
            Étienne",declined\r
            1005,60,75000,yes,Paris,approved\r
            1006,45,58000,no,Nice,declined\r

            """

        @Test(.timeLimit(.minutes(2)))
        func theSuggestedAgentFlagsReadTheImportedTable() throws {
            let box = Sandbox("csv-import")
            try box.makePKI(agents: 1)
            try Data(([0xEF, 0xBB, 0xBF] as [UInt8]) + Array(Self.csv.utf8)).write(to: URL(fileURLWithPath: box.file("applicants.csv")))
            let arguments = ["import-csv", box.file("applicants.csv"), "--table", "applicants", "--database", box.file("data.sqlite")]

            let imported = try box.runSeparately(Binaries.path("strata-datagen"), arguments)
            #expect(imported.status == 0, "\(imported.stderr)")
            let lines = imported.stdout.split(separator: "\n").map(String.init)
            #expect(lines.first == "imported 6 rows from \(box.file("applicants.csv")) into table 'applicants' of \(box.file("data.sqlite")) (new table)",
                    "\(imported.stdout)")
            #expect(lines.contains { $0.hasPrefix("  income        REAL          5      1  39000  75000") }, "\(imported.stdout)")
            #expect(lines.contains { $0.hasPrefix("  member        BOOLEAN       6      0") }, "\(imported.stdout)")
            let hint = try #require(lines.first { $0.hasPrefix("next: strata-agent ") }, "\(imported.stdout)")
            #expect(hint == "next: strata-agent --database \(box.file("data.sqlite")) --table applicants --label-column label --exclude-columns applicant_id ...")

            // The suggested flags, with --null-policy as the report's note says, read the table before connecting.
            let suggested = hint.dropFirst("next: strata-agent ".count).split(separator: " ").map(String.init).filter { $0 != "..." }
            var agent = box.agentArguments(port: 1, id: "agent-01", database: box.file("data.sqlite"),
                                           extra: ["--null-policy", "impute", "--max-connect-attempts", "1"])
            let database = try #require(agent.firstIndex(of: "--database"))
            agent.removeSubrange(database...database + 1)
            let read = try box.run(Binaries.path("strata-agent"), agent + suggested, timeout: 60)
            #expect(read.output.contains("features (3, in model order): 1. age integer (INTEGER); 2. income real (REAL), 1 missing; 3. member boolean (BOOLEAN)"),
                    "\(read.output)")
            #expect(read.output.contains("label: label, text (class names)"), "\(read.output)")
            #expect(read.output.contains("columns not used: city (TEXT column; row 1 holds 'Lyon')"), "\(read.output)")

            // Again: the table is there; the message names both ways on.
            let again = try box.runSeparately(Binaries.path("strata-datagen"), arguments)
            #expect(again.status == 1)
            #expect(again.stderr.contains("table 'applicants' already exists in \(box.file("data.sqlite")): add --replace to drop and recreate it, or --append to add these rows to it"),
                    "\(again.stderr)")
            let appended = try box.runSeparately(Binaries.path("strata-datagen"), arguments + ["--append"])
            #expect(appended.status == 0 && appended.stdout.contains("(now 12 rows)"), "\(appended.stdout)\(appended.stderr)")

            // A ragged row: exit 1, the line named, the table as it was.
            try Data("applicant_id,age,income,member,city,label\n1,2,3,yes,x,y\n1,2\n".utf8).write(to: URL(fileURLWithPath: box.file("ragged.csv")))
            let ragged = try box.runSeparately(Binaries.path("strata-datagen"),
                                               ["import-csv", box.file("ragged.csv"), "--table", "applicants", "--database", box.file("data.sqlite"), "--replace"])
            #expect(ragged.status == 1 && ragged.stderr.contains("line 3 has 2 fields, the header has 6"), "\(ragged.stderr)")
            let rows = try DatabaseQueue(path: box.file("data.sqlite")).read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM applicants") }
            #expect(rows == 12)
        }
    }
}
