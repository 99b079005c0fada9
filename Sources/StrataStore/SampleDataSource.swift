import Foundation
import GRDB
import StrataCore

/// Where an agent's rows come from: a table of its local SQLite database, or a full SQL query.
public struct SampleDataSource: Sendable, Hashable {
    public enum Selection: Sendable, Hashable {
        /// `featureColumns == nil`: every numeric column except the label, the split column and primary-key columns.
        case table(name: String, featureColumns: [String]?)
        /// Every result column except the label and the split column is a feature; all must be numeric.
        case query(sql: String)
    }

    public var databasePath: String
    public var selection: Selection
    public var labelColumn: String
    /// Column whose value says `train` or `test` (also accepted: `eval`, `validation`). When nil, or
    /// absent from the table, rows are split deterministically by `testFraction` and `splitSeed`.
    public var splitColumn: String?
    public var testFraction: Double
    public var splitSeed: UInt64

    public init(databasePath: String, selection: Selection, labelColumn: String = "label", splitColumn: String? = "split",
                testFraction: Double = 0.2, splitSeed: UInt64 = 0) {
        self.databasePath = databasePath
        self.selection = selection
        self.labelColumn = labelColumn
        self.splitColumn = splitColumn
        self.testFraction = testFraction
        self.splitSeed = splitSeed
    }
}

public struct LoadedSamples: Sendable {
    public var train: Dataset
    public var test: Dataset
    public var featureColumns: [String]
}

/// Why an agent's data could not be read. Each message names the fix.
public enum DataSourceError: Error, Hashable, Sendable, CustomStringConvertible {
    case fileNotFound(path: String)
    case notADatabase(path: String, detail: String)
    case tableNotFound(table: String, available: [String])
    case columnNotFound(column: String, source: String, available: [String])
    case noFeatureColumns(source: String)
    case nonNumericValue(column: String, row: Int64, value: String)
    case nullValue(column: String, row: Int64)
    case emptyResult(source: String)
    case emptySplit(split: String, source: String)
    case unknownSplitValue(column: String, row: Int64, value: String)
    case queryFailed(sql: String, message: String)
    case featureCountMismatch(expected: Int, actual: Int, columns: [String])
    case labelOutOfRange(row: Int64, value: Float, classCount: Int)

    public var description: String {
        switch self {
        case .fileNotFound(let path):
            return "database file \(path) does not exist: check --database (generate sample data with strata-datagen)"
        case .notADatabase(let path, let detail):
            return "\(path) is not a readable SQLite database (\(detail)): check the path, or restore the file from a backup"
        case .tableNotFound(let table, let available):
            return "table '\(table)' not found; tables in the database: \(available.isEmpty ? "none" : available.joined(separator: ", ")). Set --table, or use --query"
        case .columnNotFound(let column, let source, let available):
            return "column '\(column)' not found in \(source); columns: \(available.joined(separator: ", ")). Set --label-column / --split-column / --feature-columns"
        case .noFeatureColumns(let source):
            return "\(source) has no numeric feature columns besides the label and split: list them with --feature-columns"
        case .nonNumericValue(let column, let row, let value):
            return "row \(row), column '\(column)' holds non-numeric value '\(value)': clean the column, cast it in a --query, or leave it out of --feature-columns"
        case .nullValue(let column, let row):
            return "row \(row), column '\(column)' is NULL: fill missing values (e.g. with COALESCE in a --query) or filter those rows out"
        case .emptyResult(let source):
            return "\(source) returned no rows: check the table or the query's WHERE clause"
        case .emptySplit(let split, let source):
            return "\(source) has no \(split) rows: check the split column's values or --test-fraction"
        case .unknownSplitValue(let column, let row, let value):
            return "row \(row), split column '\(column)' holds '\(value)'; expected train or test (eval/validation also accepted)"
        case .queryFailed(let sql, let message):
            return "query failed: \(message). Query: \(sql)"
        case .featureCountMismatch(let expected, let actual, let columns):
            return "the federation's model expects \(expected) features but the data has \(actual) (\(columns.prefix(8).joined(separator: ", "))\(columns.count > 8 ? ", …" : "")): select the right columns with --feature-columns or --query"
        case .labelOutOfRange(let row, let value, let classCount):
            return "row \(row) has label \(value); the model has \(classCount) classes, so labels must be integers 0..<\(classCount)"
        }
    }
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

    private func read(_ db: Database) throws -> LoadedSamples {
        let sql: String
        let sourceName: String
        let features: [String]
        var useSplitColumn: String?

        switch selection {
        case .table(let table, let requested):
            sourceName = "table '\(table)'"
            let tables = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type IN ('table','view') AND name NOT LIKE 'sqlite_%' ORDER BY name")
            guard tables.contains(table) else { throw DataSourceError.tableNotFound(table: table, available: tables) }
            let columns = try db.columns(in: table)
            let names = columns.map(\.name)
            guard names.contains(labelColumn) else {
                throw DataSourceError.columnNotFound(column: labelColumn, source: sourceName, available: names)
            }
            if let split = splitColumn, names.contains(split) { useSplitColumn = split }
            if let requested {
                for column in requested where !names.contains(column) {
                    throw DataSourceError.columnNotFound(column: column, source: sourceName, available: names)
                }
                features = requested
            } else {
                features = columns.filter { column in
                    column.name != labelColumn && column.name != useSplitColumn && column.primaryKeyIndex == 0
                        && Self.hasNumericAffinity(declaredType: column.type)
                }.map(\.name)
            }
            guard !features.isEmpty else { throw DataSourceError.noFeatureColumns(source: sourceName) }
            let selected = ([labelColumn] + (useSplitColumn.map { [$0] } ?? []) + features).map(\.quotedDatabaseIdentifier)
            sql = "SELECT rowid AS \"__strata_row\", \(selected.joined(separator: ", ")) FROM \(table.quotedDatabaseIdentifier) ORDER BY rowid"
        case .query(let query):
            sourceName = "the query"
            let statement: Statement
            do {
                statement = try db.makeStatement(sql: query)
            } catch let error as DatabaseError {
                throw DataSourceError.queryFailed(sql: query, message: error.message ?? "\(error.resultCode)")
            }
            let names = statement.columnNames
            guard names.contains(labelColumn) else {
                throw DataSourceError.columnNotFound(column: labelColumn, source: sourceName, available: names)
            }
            if let split = splitColumn, names.contains(split) { useSplitColumn = split }
            features = names.filter { $0 != labelColumn && $0 != useSplitColumn }
            guard !features.isEmpty else { throw DataSourceError.noFeatureColumns(source: sourceName) }
            let selected = ([labelColumn] + (useSplitColumn.map { [$0] } ?? []) + features).map(\.quotedDatabaseIdentifier)
            sql = "SELECT NULL AS \"__strata_row\", \(selected.joined(separator: ", ")) FROM (\(query))"
        }

        var trainFeatures: [Float] = [], trainLabels: [Float] = []
        var testFeatures: [Float] = [], testLabels: [Float] = []
        let featureOffset = useSplitColumn == nil ? 2 : 3
        var index: Int64 = 0
        let cursor: RowCursor
        do {
            cursor = try Row.fetchCursor(db, sql: sql)
        } catch let error as DatabaseError {
            throw DataSourceError.queryFailed(sql: sql, message: error.message ?? "\(error.resultCode)")
        }
        var rowValues = [Float](repeating: 0, count: features.count)
        while let row = try cursor.next() {
            index += 1
            let rowID: Int64 = row[0] ?? index
            let label = try Self.number(row, at: 1, column: labelColumn, rowID: rowID)
            for f in 0..<features.count {
                rowValues[f] = try Self.number(row, at: featureOffset + f, column: features[f], rowID: rowID)
            }
            let isTest: Bool
            if let split = useSplitColumn {
                isTest = try Self.isTestSplit(row[2] as DatabaseValue, column: split, rowID: rowID)
            } else {
                isTest = Self.deterministicTest(rowKey: UInt64(bitPattern: rowID), seed: splitSeed, fraction: testFraction)
            }
            if isTest {
                testFeatures.append(contentsOf: rowValues); testLabels.append(label)
            } else {
                trainFeatures.append(contentsOf: rowValues); trainLabels.append(label)
            }
        }
        guard index > 0 else { throw DataSourceError.emptyResult(source: sourceName) }
        guard !trainLabels.isEmpty else { throw DataSourceError.emptySplit(split: "train", source: sourceName) }
        guard !testLabels.isEmpty else { throw DataSourceError.emptySplit(split: "test", source: sourceName) }
        return LoadedSamples(
            train: Dataset(featureCount: features.count, features: trainFeatures, labels: trainLabels),
            test: Dataset(featureCount: features.count, features: testFeatures, labels: testLabels),
            featureColumns: features)
    }

    private static func number(_ row: Row, at index: Int, column: String, rowID: Int64) throws -> Float {
        let value: DatabaseValue = row[index]
        switch value.storage {
        case .int64(let v): return Float(v)
        case .double(let v):
            guard v.isFinite else { throw DataSourceError.nonNumericValue(column: column, row: rowID, value: "\(v)") }
            return Float(v)
        case .null: throw DataSourceError.nullValue(column: column, row: rowID)
        case .string(let s): throw DataSourceError.nonNumericValue(column: column, row: rowID, value: String(s.prefix(40)))
        case .blob(let b): throw DataSourceError.nonNumericValue(column: column, row: rowID, value: "<blob of \(b.count) bytes>")
        }
    }

    private static func isTestSplit(_ value: DatabaseValue, column: String, rowID: Int64) throws -> Bool {
        switch value.storage {
        case .string(let s):
            switch s.lowercased() {
            case "train", "training": return false
            case "test", "eval", "evaluation", "validation", "val": return true
            default: throw DataSourceError.unknownSplitValue(column: column, row: rowID, value: s)
            }
        case .null: throw DataSourceError.nullValue(column: column, row: rowID)
        default: throw DataSourceError.unknownSplitValue(column: column, row: rowID, value: "\(value)")
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

    /// A row is a test row when a seeded hash of its key falls below `fraction`: stable across runs and
    /// row order.
    static func deterministicTest(rowKey: UInt64, seed: UInt64, fraction: Double) -> Bool {
        var z = rowKey &+ seed &* 0x9E37_79B9_7F4A_7C15 &+ 0x632B_E59B_D9B4_E019
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Double(z >> 11) / Double(1 << 53) < fraction
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
                CREATE TABLE \(table.quotedDatabaseIdentifier) (
                    id INTEGER PRIMARY KEY,
                    \(columns.map { "\($0) REAL NOT NULL" }.joined(separator: ",\n    ")),
                    label \(integerLabels ? "INTEGER" : "REAL") NOT NULL,
                    split TEXT NOT NULL CHECK (split IN ('train', 'test')))
                """)
            let placeholders = Array(repeating: "?", count: featureCount + 2).joined(separator: ", ")
            let statement = try db.makeStatement(sql: "INSERT INTO \(table.quotedDatabaseIdentifier) (\(columns.joined(separator: ", ")), label, split) VALUES (\(placeholders))")
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
