import Foundation
import GRDB
import StrataData
import Testing
@testable import StrataStore

/// `strata-datagen import-csv`'s import: a CSV file into a SQLite table, read back by the agent's reader.
@Suite struct CSVImportTests {
    let dir = TempDir()

    func csv(_ text: String, name: String = "in.csv") throws -> String {
        let path = dir.file(name)
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    func tables(_ database: String) throws -> [String] {
        try DatabaseQueue(path: database).read { try String.fetchAll($0, sql: "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name") }
    }

    static let applicants = """
        age,income,member,city,risk,split
        34,52000.5,yes,Lyon,approved,train
        41,,no,"Paris, 11e",declined,train
        29,61000,TRUE,Lyon,approved,test
        52,39000,f,"Saint-
        Étienne",declined,test
        60,75000,yes,Paris,approved,train

        """

    @Test func anImportedTableReadsAsFeaturesAndClassNames() throws {
        let database = dir.file("data.sqlite")
        var phases: Set<CSVImport.Progress.Phase> = []
        // A chunk of 7 bytes: rows, quotes and UTF-8 characters split across reads.
        let report = try CSVImport(file: try csv(Self.applicants), database: database, table: "applicants", chunkSize: 7).run { phases.insert($0.phase) }
        #expect(phases == [.reading, .inserting])
        #expect(report.rows == 5 && report.outcome == .created)
        #expect(report.columns.map(\.type) == [.integer, .real, .boolean, .text, .text, .text])
        #expect(report.columns[1].empty == 1 && report.columns[1].minimum == 39000 && report.columns[1].maximum == 75000)

        let declared = try DatabaseQueue(path: database).read { db in try db.columns(in: "applicants").map { "\($0.name) \($0.type)" } }
        #expect(declared == ["age INTEGER", "income REAL", "member BOOLEAN", "city TEXT", "risk TEXT", "split TEXT"])
        let stored = try DatabaseQueue(path: database).read { db in try Row.fetchAll(db, sql: "SELECT income, member, city FROM applicants ORDER BY rowid") }
        #expect(stored[1]["income"] as DatabaseValue == .null)
        #expect(stored.map { $0["member"] as Int64 } == [1, 0, 1, 0, 1])
        #expect(stored[3]["city"] as String == "Saint-\nÉtienne")

        // The agent's reader: numeric columns are the features (the boolean as 0/1), text labels class names,
        // the text city left out.
        let loaded = try SampleDataSource(databasePath: database, selection: .table(name: "applicants", featureColumns: nil),
                                          labelColumn: "risk", nullPolicy: .skip).load()
        #expect(loaded.featureColumns == ["age", "income", "member"])
        #expect(loaded.columns.map(\.kind) == [.integer, .real, .boolean])
        #expect(loaded.train.features == [34, 52000.5, 1, 60, 75000, 1])
        #expect(loaded.test.features == [29, 61000, 1, 52, 39000, 0])
        #expect(loaded.labelKind == .strings)
        #expect(loaded.trainLabelNames == ["approved", "approved"] && loaded.testLabelNames == ["approved", "declined"])
        #expect(loaded.skippedColumns.map(\.name) == ["city"])
        #expect(loaded.rows.skippedForMissingFeature == 1)
    }

    @Test func givenTypesAndQuotedNames() throws {
        let file = try csv("\"zip code\",\"say \"\"hi\"\"\",label\n01234,1,0\n75011,2.5,1\n")
        let database = dir.file("names.sqlite")
        let report = try CSVImport(file: file, database: database, table: "my \"odd\" table", types: ["zip code": .text]).run()
        #expect(report.columns.map(\.type) == [.text, .real, .integer])
        let row = try DatabaseQueue(path: database).read { db in try Row.fetchOne(db, sql: #"SELECT * FROM "my ""odd"" table" ORDER BY rowid"#) }
        #expect(row?["zip code"] as String? == "01234")
        #expect(row?["say \"hi\""] as Double? == 1)
        // The agent reads such names too (its SQL doubles the quotes inside them). A TEXT column of numerals is
        // still a feature to it: --type text keeps the zeros, --exclude-columns keeps a column out.
        let loaded = try SampleDataSource(databasePath: database, selection: .table(name: "my \"odd\" table", featureColumns: nil),
                                          splitColumn: nil, testFraction: 0.5, excludedColumns: ["zip code"]).load()
        #expect(loaded.featureColumns == ["say \"hi\""])
        #expect((loaded.train.features + loaded.test.features).sorted() == [1, 2.5])
        let appended = try CSVImport(file: file, database: database, table: "my \"odd\" table", existingTable: .append).run()
        #expect(appended.outcome == .appended(rowsInTable: 4))
    }

    @Test func anExistingTableIsRefusedReplacedOrAppendedTo() throws {
        let database = dir.file("existing.sqlite")
        let first = try csv("a,label\n1,0\n2,1\n", name: "first.csv")
        _ = try CSVImport(file: first, database: database, table: "t").run()

        #expect(throws: CSVImportError.tableExists(table: "t", database: database)) {
            try CSVImport(file: first, database: database, table: "T").run()
        }
        let message = CSVImportError.tableExists(table: "t", database: database).description
        #expect(message.contains("add --replace to drop and recreate it, or --append to add these rows to it"))

        // Append: by name, in any order and case; the table's types decide.
        let more = try csv("LABEL,a\n0,3\n1,4.5\n", name: "more.csv")
        #expect(throws: CSVImportError.valueDoesNotFit(line: 3, column: "a", value: "4.5", type: .integer, because: "the table declares it INTEGER")) {
            try CSVImport(file: more, database: database, table: "t", existingTable: .append).run()
        }
        let fits = try csv("LABEL,a\n0,3\n1,4\n", name: "fits.csv")
        let appended = try CSVImport(file: fits, database: database, table: "t", existingTable: .append).run()
        #expect(appended.outcome == .appended(rowsInTable: 4))
        #expect(appended.columns.map(\.typeSource) == [.table(declaredType: "INTEGER"), .table(declaredType: "INTEGER")])
        let values = try DatabaseQueue(path: database).read { try Int64.fetchAll($0, sql: "SELECT a FROM t ORDER BY rowid") }
        #expect(values == [1, 2, 3, 4])

        #expect(throws: CSVImportError.columnsDiffer(table: "t", onlyInFile: ["b"], onlyInTable: ["label"])) {
            try CSVImport(file: try csv("a,b\n1,2\n", name: "other.csv"), database: database, table: "t", existingTable: .append).run()
        }
        #expect(throws: CSVImportError.typeWithAppend(table: "t")) {
            try CSVImport(file: fits, database: database, table: "t", types: ["a": .real], existingTable: .append).run()
        }

        // Replace: dropped and created anew with the file's types.
        let replaced = try CSVImport(file: more, database: database, table: "t", existingTable: .replace).run()
        #expect(replaced.outcome == .replaced && replaced.columns.map(\.type) == [.integer, .real])
        let count = try DatabaseQueue(path: database).read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM t") }
        #expect(count == 2)
    }

    @Test func anErrorMidFileLeavesTheDatabaseAsItWas() throws {
        // The first pass finds a ragged row before anything is written.
        let database = dir.file("kept.sqlite")
        try DatabaseQueue(path: database).write { try $0.execute(sql: "CREATE TABLE other (x INTEGER); INSERT INTO other VALUES (7)") }
        var text = "a,b\n"
        for i in 0..<1000 { text += "\(i),\(i)\n" }
        let ragged = try csv(text + "1,2,3\n", name: "ragged.csv")
        #expect(throws: CSVImportError.raggedRow(line: 1002, fields: 3, expected: 2, delimiter: UInt8(ascii: ","))) {
            try CSVImport(file: ragged, database: database, table: "t").run()
        }
        #expect(try tables(database) == ["other"])

        // A replace that fails in its second pass (the file changed after the types were inferred) is rolled
        // back: the old table is still there, with its rows.
        let file = try csv(text, name: "changing.csv")
        _ = try CSVImport(file: file, database: database, table: "t").run()
        let changed = text + "x,1\n"
        var inserted = 0
        #expect(throws: CSVImportError.valueDoesNotFit(line: 1002, column: "a", value: "x", type: .integer,
                                                       because: "the file changed since its types were inferred")) {
            try CSVImport(file: file, database: database, table: "t", existingTable: .replace, chunkSize: 4096).run { progress in
                if progress.phase == .inserting, inserted == 0 {
                    inserted = progress.rows
                    try? Data(changed.utf8).write(to: URL(fileURLWithPath: file))
                }
            }
        }
        #expect(inserted > 0)
        let count = try DatabaseQueue(path: database).read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM t") }
        #expect(count == 1000)
        // Rows added after the first pass are not imported silently either.
        try Data(text.utf8).write(to: URL(fileURLWithPath: file))
        var grown = false
        do {
            _ = try CSVImport(file: file, database: database, table: "t", existingTable: .append, chunkSize: 4096).run { progress in
                if progress.phase == .inserting, !grown {
                    grown = true
                    try? Data((text + "1000,1000\n").utf8).write(to: URL(fileURLWithPath: file))
                }
            }
            Issue.record("a file that grew between the passes was imported")
        } catch {
            guard case .unreadableFile(_, let detail) = error else { Issue.record("\(error)"); return }
            #expect(detail == "it changed while it was imported: 1000 rows when the types were inferred, 1001 when inserted")
        }
        #expect(try DatabaseQueue(path: database).read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM t") } == 1000)

        // A database the import would have created is not left behind.
        let fresh = dir.file("fresh.sqlite")
        let bad = try csv("a\n1\n", name: "bad.csv")
        #expect(throws: CSVImportError.self) {
            try CSVImport(file: bad, database: fresh, table: "sqlite_reserved").run()
        }
        #expect(!FileManager.default.fileExists(atPath: fresh))
    }

    @Test func dryRunWritesNothing() throws {
        let database = dir.file("dry.sqlite")
        let report = try CSVImport(file: try csv(Self.applicants), database: database, table: "applicants", dryRun: true).run()
        #expect(report.outcome == .dryRun && report.rows == 5)
        #expect(!FileManager.default.fileExists(atPath: database))
    }

    @Test func errorsNameTheFileAndTheDatabase() throws {
        let missing = dir.file("missing.csv")
        #expect(throws: CSVImportError.fileNotFound(path: missing)) {
            try CSVImport(file: missing, database: dir.file("x.sqlite"), table: "t").run()
        }
        let empty = try csv("", name: "empty.csv")
        #expect(throws: CSVImportError.emptyFile(path: empty)) { try CSVImport(file: empty, database: dir.file("x.sqlite"), table: "t").run() }
        let headerOnly = try csv("a,b\n", name: "header.csv")
        #expect(throws: CSVImportError.noRows(path: headerOnly)) { try CSVImport(file: headerOnly, database: dir.file("x.sqlite"), table: "t").run() }

        // A text file given as the database.
        let notDatabase = try csv("this is not a database, but it is long enough to hold a header............................................\n", name: "notes.txt")
        let file = try csv("a\n1\n")
        do {
            _ = try CSVImport(file: file, database: notDatabase, table: "t").run()
            Issue.record("a text file was taken for a database")
        } catch {
            guard case .notADatabase(let path, _) = error else { Issue.record("\(error)"); return }
            #expect(path == notDatabase)
            #expect(error.description.contains("is not a SQLite database"))
        }
        // A database in a folder that does not exist.
        do {
            _ = try CSVImport(file: file, database: dir.file("no/such/folder/d.sqlite"), table: "t").run()
            Issue.record("a database was created in a missing folder")
        } catch {
            guard case .cannotOpenDatabase = error else { Issue.record("\(error)"); return }
        }
    }
}
