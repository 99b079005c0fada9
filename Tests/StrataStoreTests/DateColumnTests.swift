import Foundation
import GRDB
import StrataData
import Testing
@testable import StrataStore

/// `--date-columns`: dates and timestamps read as days since 1970-01-01 UTC, in a SQLite table or query; a
/// value that is not a date, or a date column that cannot be a feature, is a typed error naming the fix.
@Suite struct DateColumnTests {
    @Test func datesAndTimestampsAreDaysSinceTheEpoch() {
        #expect(DateValues.days(sinceEpoch: "1970-01-01") == 0)
        #expect(DateValues.days(sinceEpoch: "1969-12-31") == -1)
        #expect(DateValues.days(sinceEpoch: "2000-03-01") == 11_017)   // after a 400-year leap day
        #expect(DateValues.days(sinceEpoch: "2024-02-29") == 19_782)
        #expect(DateValues.days(sinceEpoch: "2024-03-01 12:00") == 19_783.5)
        #expect(DateValues.days(sinceEpoch: "2024-03-01T18:00:00Z") == 19_783.75)
        #expect(DateValues.days(sinceEpoch: "2024-03-01T14:00:00+02:00") == 19_783.5)
        #expect(DateValues.days(sinceEpoch: "2024-03-01 12:00:00+00") == 19_783.5)   // PostgreSQL's timestamptz text
        #expect(DateValues.days(sinceEpoch: "2024-03-01T06:30:00-0530") == 19_783.5)
        #expect(DateValues.days(sinceEpoch: "2024-03-01 00:00:43.2") == 19_783 + 43.2 / 86_400)
        for invalid in ["2023-02-29", "2024-13-01", "2024-00-10", "2024-04-31", "2024-03-01 24:00", "2024-03-01 12:60",
                        "2024-3-1", "01/03/2024", "2024-03-01x", "2024-03-01 12", "2024-03-01 12:00:00.", "", "20240301",
                        "0000-01-01", "2024-03-01 12:00+15", "١٢٣٤-03-01"] {
            #expect(DateValues.days(sinceEpoch: invalid) == nil, "\(invalid)")
        }
    }

    @Test func aSQLiteDateColumnIsReadWhenNamed() throws {
        let dir = TempDir()
        var sql = "CREATE TABLE visits (visited DATE, amount REAL, label INTEGER);"
        // Dates that increase with every row, like an event log's: not mistaken for a row identifier.
        for i in 0..<40 { sql += "INSERT INTO visits VALUES (date('2024-01-01', '+\(i) days'), \(Double(i) * 1.5), \(i % 2));" }
        let queue = try DatabaseQueue(path: dir.file("v.sqlite"))
        try queue.write { try $0.execute(sql: sql) }

        // Unnamed, SQLite's DATE (numeric affinity) holding text stops the agent, pointing at --date-columns.
        let unnamed = #expect(throws: DataSourceError.self) {
            try SampleDataSource(databasePath: dir.file("v.sqlite"), options: SampleOptions(selection: .table(name: "visits", featureColumns: nil))).load()
        }
        #expect(unnamed?.description.contains("--date-columns visited") == true, "\(String(describing: unnamed))")

        let options = SampleOptions(selection: .table(name: "visits", featureColumns: nil), splitColumn: nil, dateColumns: ["visited"])
        let loaded = try SampleDataSource(databasePath: dir.file("v.sqlite"), options: options).load()
        #expect(loaded.featureColumns == ["visited", "amount"])
        #expect(loaded.columns.map(\.kind) == [.date, .real])
        let all = (loaded.train.features + loaded.test.features)
        let days = stride(from: 0, to: all.count, by: 2).map { all[$0] }.sorted()
        #expect(days == (0..<40).map { Float(19_723 + $0) })

        // A query's text column, timestamps with a time.
        let query = SampleOptions(selection: .query(sql: "SELECT visited || ' 06:00' AS at, label FROM visits"), splitColumn: nil, dateColumns: ["at"])
        let fromQuery = try SampleDataSource(databasePath: dir.file("v.sqlite"), options: query).load()
        #expect((fromQuery.train.features + fromQuery.test.features).sorted() == (0..<40).map { Float(19_723 + $0) + 0.25 })
    }

    @Test func whatIsNotADateIsRefusedByName() throws {
        let dir = TempDir()
        let queue = try DatabaseQueue(path: dir.file("d.sqlite"))
        try queue.write {
            try $0.execute(sql: """
                CREATE TABLE t (seen TEXT, stamp INTEGER, x REAL, label INTEGER, split TEXT);
                INSERT INTO t VALUES ('2024-01-05', 1704412800, 1, 0, 'train'), ('5 Jan 2024', 1704412800, 2, 1, 'test');
                """)
        }
        func load(_ options: SampleOptions) -> DataSourceError? {
            #expect(throws: DataSourceError.self) { try SampleDataSource(databasePath: dir.file("d.sqlite"), options: options).load() }
        }
        let table = SampleSelection.table(name: "t", featureColumns: nil)
        #expect(load(SampleOptions(selection: table, dateColumns: ["seen"])) == .notADate(column: "seen", row: 2, value: "5 Jan 2024"))
        // Numbers are not guessed at: Unix time needs no --date-columns.
        let number = load(SampleOptions(selection: table, excludedColumns: ["seen"], dateColumns: ["stamp"]))
        #expect(number == .notADate(column: "stamp", row: 1, value: "1704412800"))
        #expect(number?.description.contains("needs no --date-columns") == true)
        #expect(load(SampleOptions(selection: table, dateColumns: ["nope"])) == .columnNotFound(column: "nope", source: "table 't'", available: ["seen", "stamp", "x", "label", "split"]))
        #expect(load(SampleOptions(selection: table, dateColumns: ["label"])) == .dateColumnNotAFeature(column: "label", reason: "it is the label column"))
        #expect(load(SampleOptions(selection: table, excludedColumns: ["seen"], dateColumns: ["seen"]))
                == .dateColumnNotAFeature(column: "seen", reason: "--exclude-columns leaves it out"))
        #expect(load(SampleOptions(selection: .table(name: "t", featureColumns: ["x"]), dateColumns: ["seen"]))
                == .dateColumnNotAFeature(column: "seen", reason: "--feature-columns does not list it"))
    }
}
