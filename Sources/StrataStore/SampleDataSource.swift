import Foundation
import GRDB
import StrataCore
import StrataData

/// An agent's rows from its local SQLite database: a table, or any SQL query, and how its columns become
/// features (docs/PROTOCOL.md §8; the shared rules are `SamplePlan` and `SampleAssembler`).
public struct SampleDataSource: DataSource, Hashable {
    public typealias Selection = SampleSelection

    public var databasePath: String
    public var options: SampleOptions

    public init(databasePath: String, options: SampleOptions) {
        self.databasePath = databasePath
        self.options = options
    }

    public init(databasePath: String, selection: Selection, labelColumn: String = "label", splitColumn: String? = "split",
                testFraction: Double = 0.2, splitSeed: UInt64 = 0, excludedColumns: [String] = [], nullPolicy: NullPolicy = .refuse) {
        self.init(databasePath: databasePath,
                  options: SampleOptions(selection: selection, labelColumn: labelColumn, splitColumn: splitColumn, testFraction: testFraction,
                                         splitSeed: splitSeed, excludedColumns: excludedColumns, nullPolicy: nullPolicy))
    }

    /// `SampleOptions.columnList`.
    public static func columnList(_ arguments: [String]) -> [String] { SampleOptions.columnList(arguments) }

    static func deterministicTest(rowKey: UInt64, seed: UInt64, fraction: Double) -> Bool {
        SampleAssembler.deterministicTest(rowKey: rowKey, seed: seed, fraction: fraction)
    }

    public var description: String { "SQLite database \(databasePath)" }
}

extension SampleDataSource {
    /// Reads every row once. Runs on the calling thread: call it off any event loop.
    public func load() throws -> LoadedSamples {
        guard FileManager.default.fileExists(atPath: databasePath) else { throw DataSourceError.fileNotFound(path: databasePath) }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.label = "strata.samples"
        let queue: DatabaseQueue
        do {
            queue = try DatabaseQueue(path: databasePath, configuration: configuration)
        } catch {
            throw DataSourceError.notADatabase(path: databasePath, detail: Self.describe(error))
        }
        do {
            return try queue.read { db in try read(db) }
        } catch let error as DataSourceError {
            throw error
        } catch let error as DatabaseError where error.resultCode == .SQLITE_NOTADB || error.resultCode == .SQLITE_CORRUPT {
            throw DataSourceError.notADatabase(path: databasePath, detail: Self.describe(error))
        }
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? DatabaseError { return error.message ?? "\(error.resultCode)" }
        return "\(error)"
    }

    /// The columns to read and the SQL that reads them: the table's rowid first (NULL for a query), then the
    /// plan's columns by position.
    private func plan(_ db: Database) throws -> (SamplePlan, sql: String) {
        switch options.selection {
        case .table(let table, _):
            let tables = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type IN ('table','view') AND name NOT LIKE 'sqlite_%' ORDER BY name")
            guard tables.contains(table) else { throw DataSourceError.tableNotFound(table: table, available: tables) }
            let columns = try db.tableColumns(table).map { column in
                SourceColumn(name: column.name, declaredType: column.declaredType,
                             typing: Self.hasNumericAffinity(declaredType: column.declaredType) ? .numeric : .textual,
                             isPrimaryKey: column.primaryKeyIndex != 0)
            }
            let plan = try SamplePlan(options: options, columns: columns, sourceName: "table '\(table)'")
            let selected = plan.columns.map(\.sqlIdentifier).joined(separator: ", ")
            return (plan, "SELECT rowid AS \"__strata_row\", \(selected) FROM \(table.sqlIdentifier) ORDER BY rowid")
        case .query(let query, _):
            let statement: Statement
            do {
                statement = try db.makeStatement(sql: query)
            } catch let error as DatabaseError {
                throw DataSourceError.queryFailed(sql: query, message: error.message ?? "\(error.resultCode)")
            }
            let columns = statement.columnNames.map { SourceColumn(name: $0, declaredType: nil, typing: .numeric) }
            let plan = try SamplePlan(options: options, columns: columns, sourceName: "the query")
            let selected = plan.columns.map(\.sqlIdentifier).joined(separator: ", ")
            return (plan, "SELECT NULL AS \"__strata_row\", \(selected) FROM (\(query))")
        }
    }

    private func read(_ db: Database) throws -> LoadedSamples {
        let (plan, sql) = try plan(db)
        var assembler = SampleAssembler(plan: plan, options: options)
        let cursor: RowCursor
        do {
            cursor = try Row.fetchCursor(db, sql: sql)
        } catch let error as DatabaseError {
            throw DataSourceError.queryFailed(sql: sql, message: error.message ?? "\(error.resultCode)")
        }
        while let row = try cursor.next() {
            if assembler.isFull { assembler.stop(); break }
            try assembler.add(rowID: row[0]) { i in Self.cell(row[i + 1] as DatabaseValue) }
        }
        return try assembler.finish()
    }

    /// SQLite's storage classes are the shared cells.
    static func cell(_ value: DatabaseValue) -> DatabaseCell {
        switch value.storage {
        case .null: .null
        case .int64(let v): .integer(v)
        case .double(let v): .real(v)
        case .string(let s): .text(s)
        case .blob(let b): .blob(bytes: b.count)
        }
    }

    /// SQLite's column affinity rules (https://www.sqlite.org/datatype3.html, 3.1): INT → integer;
    /// CHAR/CLOB/TEXT → text; BLOB or none → blob; REAL/FLOA/DOUB → real; anything else → numeric.
    static func hasNumericAffinity(declaredType: String) -> Bool {
        let type = declaredType.uppercased()
        if type.contains("INT") { return true }
        if type.contains("CHAR") || type.contains("CLOB") || type.contains("TEXT") { return false }
        if type.isEmpty || type.contains("BLOB") { return false }
        return true
    }
}

/// Writes a sample database in the layout `SampleDataSource` reads by default:
/// table `samples(id INTEGER PRIMARY KEY, x0 REAL, …, label INTEGER|REAL, split TEXT)`.
public enum SampleDatabaseWriter {
    public static func write(path: String, train: Dataset, test: Dataset, integerLabels: Bool, table: String = "samples") throws {
        precondition(train.featureCount == test.featureCount)
        if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
        let queue = try DatabaseQueue(path: path)
        let featureCount = train.featureCount
        let columns = (0..<featureCount).map { "x\($0)" }
        try queue.write { db in
            try db.execute(sql: """
                CREATE TABLE \(table.sqlIdentifier) (
                    id INTEGER PRIMARY KEY,
                    \(columns.map { "\($0) REAL NOT NULL" }.joined(separator: ",\n    ")),
                    label \(integerLabels ? "INTEGER" : "REAL") NOT NULL,
                    split TEXT NOT NULL CHECK (split IN ('train', 'test')))
                """)
            let placeholders = Array(repeating: "?", count: featureCount + 2).joined(separator: ", ")
            let statement = try db.makeStatement(sql: "INSERT INTO \(table.sqlIdentifier) (\(columns.joined(separator: ", ")), label, split) VALUES (\(placeholders))")
            for (data, split) in [(train, "train"), (test, "test")] {
                var arguments = [DatabaseValue](repeating: .null, count: featureCount + 2)
                for row in 0..<data.count {
                    for f in 0..<featureCount {
                        arguments[f] = Double(data.features[row * featureCount + f]).databaseValue
                    }
                    arguments[featureCount] = integerLabels ? Int64(data.labels[row]).databaseValue : Double(data.labels[row]).databaseValue
                    arguments[featureCount + 1] = split.databaseValue
                    try statement.execute(arguments: StatementArguments(arguments))
                }
            }
        }
    }
}
