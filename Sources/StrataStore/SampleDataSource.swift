import Foundation
import GRDB
import StrataCore

/// Where an agent's rows come from: a table of its local SQLite database, or a full SQL query, and how its
/// columns become features (docs/PROTOCOL.md §8).
public struct SampleDataSource: Sendable, Hashable {
    public enum Selection: Sendable, Hashable {
        /// `featureColumns == nil`: the columns chosen as §8 says (numeric columns, and text columns whose
        /// every value is a number, except the label, the split column, primary-key and excluded columns).
        case table(name: String, featureColumns: [String]?)
        /// `featureColumns == nil`: every result column except the label, the split column and excluded
        /// columns; all must hold numbers.
        case query(sql: String, featureColumns: [String]? = nil)
    }

    public var databasePath: String
    public var selection: Selection
    public var labelColumn: String
    /// Column whose value says `train` or `test` (also accepted: `eval`, `validation`). When nil, or
    /// absent from the table, rows are split deterministically by `testFraction` and `splitSeed`.
    public var splitColumn: String?
    public var testFraction: Double
    public var splitSeed: UInt64
    /// Columns never taken as features when the features are chosen automatically (`featureColumns == nil`).
    public var excludedColumns: [String]
    public var nullPolicy: NullPolicy

    public init(databasePath: String, selection: Selection, labelColumn: String = "label", splitColumn: String? = "split",
                testFraction: Double = 0.2, splitSeed: UInt64 = 0, excludedColumns: [String] = [], nullPolicy: NullPolicy = .refuse) {
        self.databasePath = databasePath
        self.selection = selection
        self.labelColumn = labelColumn
        self.splitColumn = splitColumn
        self.testFraction = testFraction
        self.splitSeed = splitSeed
        self.excludedColumns = excludedColumns
        self.nullPolicy = nullPolicy
    }

    /// Splits what users type for a list of columns: `age,income, debt_ratio` (commas, spaces around names
    /// ignored), given once or repeated (`--feature-columns age --feature-columns income`); empty names dropped.
    public static func columnList(_ arguments: [String]) -> [String] {
        arguments.flatMap { $0.split(separator: ",") }.map { ColumnValues.trimmed(String($0)) }.filter { !$0.isEmpty }
    }
}

/// Why an agent's data could not be read. Each message names the fix.
public enum DataSourceError: Error, Hashable, Sendable, CustomStringConvertible {
    case fileNotFound(path: String)
    case notADatabase(path: String, detail: String)
    case tableNotFound(table: String, available: [String])
    case columnNotFound(column: String, source: String, available: [String])
    /// `skipped`: the columns left out, each with its reason.
    case noFeatureColumns(source: String, skipped: [ColumnNote])
    case nonNumericValue(column: String, row: Int64, value: String)
    /// A number beyond float32's range (about ±3.4e38).
    case valueOutOfRange(column: String, row: Int64, value: String)
    /// A column mixing true/false words with numbers other than 0 and 1.
    case booleanMixedWithNumbers(column: String, booleanRow: Int64, booleanValue: String, numberRow: Int64, number: Double)
    case nullValue(column: String, row: Int64)
    case emptyResult(source: String)
    /// Every row had a missing value the null policy leaves out.
    case allRowsSkipped(source: String, rows: RowCounts)
    case emptySplit(split: String, source: String)
    case unknownSplitValue(column: String, row: Int64, value: String)
    case queryFailed(sql: String, message: String)
    case featureCountMismatch(expected: Int, actual: Int, columns: [String])
    case labelOutOfRange(row: Int64, value: Float, classCount: Int)
    /// Feature columns chosen automatically that look like row identifiers, each with the reason.
    case likelyIdentifierColumns(source: String, columns: [ColumnNote], others: [String])
    case labelAmongFeatures(column: String)
    case duplicateFeatureColumn(column: String)
    /// A text label that the federation's label vocabulary does not hold; `rows`: how many rows carry it.
    case unknownLabel(column: String, label: String, rows: Int, vocabulary: [String])

    public var description: String {
        switch self {
        case .fileNotFound(let path):
            return "database file \(path) does not exist: check --database (generate sample data with strata-datagen)"
        case .notADatabase(let path, let detail):
            return "\(path) is not a readable SQLite database (\(detail)): check the path, or restore the file from a backup"
        case .tableNotFound(let table, let available):
            return "table '\(table)' not found; tables in the database: \(available.isEmpty ? "none" : available.joined(separator: ", ")). Set --table, or use --query"
        case .columnNotFound(let column, let source, let available):
            return "column '\(column)' not found in \(source); columns: \(available.joined(separator: ", ")). Set --label-column / --split-column / --feature-columns / --exclude-columns"
        case .noFeatureColumns(let source, let skipped):
            let why = skipped.isEmpty ? "" : " (left out: \(skipped.map(\.description).joined(separator: "; ")))"
            return "\(source) has no numeric feature columns besides the label and split\(why): list them with --feature-columns"
        case .nonNumericValue(let column, let row, let value):
            return "row \(row), column '\(column)' holds '\(value)', which is not a number (accepted: integers, reals, decimal numerals such as '12', ' 3.5 ', '1e3', '-0.2' stored as text, and true/false, yes/no, t/f): clean the column, convert it in a --query (e.g. CAST(REPLACE(\(column), ',', '') AS REAL)), or leave it out with --exclude-columns or --feature-columns"
        case .valueOutOfRange(let column, let row, let value):
            return "row \(row), column '\(column)' holds \(value), beyond the range of a 32-bit float (±3.4e38): rescale the column in a --query or leave it out with --exclude-columns"
        case .booleanMixedWithNumbers(let column, let booleanRow, let booleanValue, let numberRow, let number):
            return "column '\(column)' mixes true/false words (row \(booleanRow): '\(booleanValue)') with numbers other than 0 and 1 (row \(numberRow): \(number)): clean the column, or leave it out with --exclude-columns or --feature-columns"
        case .nullValue(let column, let row):
            return "row \(row), column '\(column)' is NULL (or empty text): choose --null-policy skip (leave such rows out) or impute (fill missing feature values with the federation's mean), fill the values (e.g. COALESCE in a --query), or filter those rows out"
        case .emptyResult(let source):
            return "\(source) returned no rows: check the table or the query's WHERE clause"
        case .allRowsSkipped(let source, let rows):
            return "\(source): every row was left out for a missing value (\(rows)): check the columns' NULLs, or choose --null-policy impute"
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
        case .likelyIdentifierColumns(let source, let columns, let others):
            let names = columns.map(\.name)
            let listed = columns.map { "'\($0.name)': \($0.reason)" }.joined(separator: "; ")
            let suggestion = others.isEmpty ? "" : " or name the features yourself: --feature-columns \(others.joined(separator: ","))"
            return "\(source): \(names.count == 1 ? "column" : "columns") \(listed) — \(names.count == 1 ? "it looks" : "they look") like a row identifier, not a feature, and an identifier taken as a feature spoils the model. Nothing is guessed: leave \(names.count == 1 ? "it" : "them") out with --exclude-columns \(names.joined(separator: ","))\(suggestion) (a table whose id column is declared INTEGER PRIMARY KEY needs neither)"
        case .labelAmongFeatures(let column):
            return "the label column '\(column)' is listed in --feature-columns: a model given its own label learns nothing useful; remove it from the list"
        case .duplicateFeatureColumn(let column):
            return "column '\(column)' is listed twice in --feature-columns"
        case .unknownLabel(let column, let label, let rows, let vocabulary):
            let shown = vocabulary.prefix(10).map { "'\($0)'" }.joined(separator: ", ") + (vocabulary.count > 10 ? ", …" : "")
            return "label column '\(column)': '\(label)' (\(rows) row\(rows == 1 ? "" : "s")) is not in the federation's label vocabulary [\(shown)]: correct the label, or filter those rows out in a --query"
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

    /// A column that may become a feature. `required`: its values must be numbers (a declared numeric type,
    /// a listed column, a query's column); otherwise (a text or untyped column chosen automatically) it is
    /// taken only if every value turns out to be a number.
    private struct Candidate {
        var name: String
        var declaredType: String?
        var required: Bool
    }

    /// Which columns to read, and the SQL that reads them (label, split if any, candidates, each by position).
    private struct Plan {
        var sourceName: String
        var sql: String
        var candidates: [Candidate]
        var useSplitColumn: String?
        /// The user named the features: nothing is guessed, so no identifier check.
        var explicit: Bool
        /// Rows come in rowid order (a table), not in a query's order.
        var isTable: Bool
    }

    private func plan(_ db: Database) throws -> Plan {
        switch selection {
        case .table(let table, let requested):
            let sourceName = "table '\(table)'"
            let tables = try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type IN ('table','view') AND name NOT LIKE 'sqlite_%' ORDER BY name")
            guard tables.contains(table) else { throw DataSourceError.tableNotFound(table: table, available: tables) }
            let columns = try db.columns(in: table)
            let names = columns.map(\.name)
            let (useSplit, explicitColumns) = try checkNames(names, requested: requested, sourceName: sourceName)
            let candidates: [Candidate]
            if let explicitColumns {
                candidates = explicitColumns.map { name in
                    Candidate(name: name, declaredType: columns.first { $0.name == name }?.type, required: true)
                }
            } else {
                candidates = columns.filter { column in
                    column.name != labelColumn && column.name != useSplit && column.primaryKeyIndex == 0
                        && !excludedColumns.contains(column.name)
                }.map { Candidate(name: $0.name, declaredType: $0.type, required: Self.hasNumericAffinity(declaredType: $0.type)) }
            }
            guard !candidates.isEmpty else { throw DataSourceError.noFeatureColumns(source: sourceName, skipped: []) }
            let selected = ([labelColumn] + (useSplit.map { [$0] } ?? []) + candidates.map(\.name)).map(\.quotedDatabaseIdentifier)
            return Plan(sourceName: sourceName,
                        sql: "SELECT rowid AS \"__strata_row\", \(selected.joined(separator: ", ")) FROM \(table.quotedDatabaseIdentifier) ORDER BY rowid",
                        candidates: candidates, useSplitColumn: useSplit, explicit: explicitColumns != nil, isTable: true)
        case .query(let query, let requested):
            let sourceName = "the query"
            let statement: Statement
            do {
                statement = try db.makeStatement(sql: query)
            } catch let error as DatabaseError {
                throw DataSourceError.queryFailed(sql: query, message: error.message ?? "\(error.resultCode)")
            }
            let names = statement.columnNames
            let (useSplit, explicitColumns) = try checkNames(names, requested: requested, sourceName: sourceName)
            let features = explicitColumns ?? names.filter { $0 != labelColumn && $0 != useSplit && !excludedColumns.contains($0) }
            guard !features.isEmpty else { throw DataSourceError.noFeatureColumns(source: sourceName, skipped: []) }
            let selected = ([labelColumn] + (useSplit.map { [$0] } ?? []) + features).map(\.quotedDatabaseIdentifier)
            return Plan(sourceName: sourceName, sql: "SELECT NULL AS \"__strata_row\", \(selected.joined(separator: ", ")) FROM (\(query))",
                        candidates: features.map { Candidate(name: $0, declaredType: nil, required: true) },
                        useSplitColumn: useSplit, explicit: explicitColumns != nil, isTable: false)
        }
    }

    /// Checks the label, the split, the excluded and the requested columns against the source's columns.
    private func checkNames(_ names: [String], requested: [String]?, sourceName: String) throws -> (split: String?, requested: [String]?) {
        guard names.contains(labelColumn) else {
            throw DataSourceError.columnNotFound(column: labelColumn, source: sourceName, available: names)
        }
        for column in excludedColumns where !names.contains(column) {
            throw DataSourceError.columnNotFound(column: column, source: sourceName, available: names)
        }
        let split = splitColumn.flatMap { names.contains($0) ? $0 : nil }
        guard let requested, !requested.isEmpty else { return (split, nil) }
        var seen = Set<String>()
        for column in requested {
            guard names.contains(column) else { throw DataSourceError.columnNotFound(column: column, source: sourceName, available: names) }
            guard column != labelColumn else { throw DataSourceError.labelAmongFeatures(column: column) }
            guard seen.insert(column).inserted else { throw DataSourceError.duplicateFeatureColumn(column: column) }
        }
        return (split, requested)
    }

    /// What one candidate column's values turned out to be, over every row read.
    private struct ColumnScan {
        var candidate: Candidate
        /// One per row read; NaN where the value is missing.
        var values: [Double] = []
        /// Why a non-required column is not used (its values are dropped).
        var rejection: String?
        var missing = 0
        var sawReal = false, sawText = false, sawBooleanWord = false
        var firstBooleanWord: (row: Int64, value: String)?
        var firstOtherNumber: (row: Int64, value: Double)?

        init(_ candidate: Candidate) { self.candidate = candidate }

        var declaresBoolean: Bool { candidate.declaredType?.uppercased().contains("BOOL") ?? false }
    }

    private enum LabelCell {
        case missing
        /// `numeral`: the trimmed text of a number stored as TEXT, its name if the labels turn out to be names.
        case number(Double, NumberForm, numeral: String?)
        /// A text label that is not a numeral.
        case text(String)
    }

    private enum SplitCell: UInt8 { case train, test, missing }

    private func read(_ db: Database) throws -> LoadedSamples {
        let plan = try plan(db)
        var scans = plan.candidates.map { ColumnScan($0) }
        var rowIDs: [Int64] = []
        var labels: [LabelCell] = []
        var splits: [SplitCell] = []
        let featureOffset = plan.useSplitColumn == nil ? 2 : 3

        let cursor: RowCursor
        do {
            cursor = try Row.fetchCursor(db, sql: plan.sql)
        } catch let error as DatabaseError {
            throw DataSourceError.queryFailed(sql: plan.sql, message: error.message ?? "\(error.resultCode)")
        }
        var index: Int64 = 0
        while let row = try cursor.next() {
            index += 1
            let rowID: Int64 = row[0] ?? index
            rowIDs.append(rowID)
            labels.append(try Self.label(row[1] as DatabaseValue, column: labelColumn, rowID: rowID))
            if let split = plan.useSplitColumn {
                splits.append(try Self.split(row[2] as DatabaseValue, column: split, rowID: rowID))
            } else {
                splits.append(Self.deterministicTest(rowKey: UInt64(bitPattern: rowID), seed: splitSeed, fraction: testFraction) ? .test : .train)
            }
            for f in scans.indices where scans[f].rejection == nil {
                try Self.scan(row[featureOffset + f] as DatabaseValue, into: &scans[f], rowID: rowID)
            }
        }
        guard index > 0 else { throw DataSourceError.emptyResult(source: plan.sourceName) }

        // The columns: kinds, the ones left out, identifiers.
        var columns: [FeatureColumn] = []
        var kept: [Int] = []
        var skippedColumns: [ColumnNote] = []
        for (f, scan) in scans.enumerated() {
            let name = scan.candidate.name
            if let rejection = scan.rejection {
                skippedColumns.append(ColumnNote(name: name, reason: rejection))
                continue
            }
            if let word = scan.firstBooleanWord, let other = scan.firstOtherNumber {
                guard !scan.candidate.required else {
                    throw DataSourceError.booleanMixedWithNumbers(column: name, booleanRow: word.row, booleanValue: word.value,
                                                                  numberRow: other.row, number: other.value)
                }
                skippedColumns.append(ColumnNote(name: name, reason: "mixes true/false words with other numbers"))
                continue
            }
            if scan.missing == scan.values.count && !scan.candidate.required {
                skippedColumns.append(ColumnNote(name: name, reason: "\(Self.typeName(scan.candidate.declaredType)) column with no values"))
                continue
            }
            let kind: FeatureColumn.Kind
            if scan.missing == scan.values.count { kind = .noValues }
            else if scan.sawBooleanWord || (scan.declaresBoolean && scan.firstOtherNumber == nil) { kind = .boolean }
            else if scan.sawText { kind = .textNumerals }
            else if scan.sawReal { kind = .real }
            else { kind = .integer }
            columns.append(FeatureColumn(name: name, kind: kind, declaredType: scan.candidate.declaredType, missingCount: scan.missing))
            kept.append(f)
        }
        guard !kept.isEmpty else { throw DataSourceError.noFeatureColumns(source: plan.sourceName, skipped: skippedColumns) }
        if !plan.explicit {
            let suspects = zip(kept, columns).compactMap { f, column -> ColumnNote? in
                guard column.kind != .boolean,
                      let reason = ColumnValues.identifierReason(name: column.name, values: scans[f].values,
                                                                      rowOrderIsInsertionOrder: plan.isTable) else { return nil }
                return ColumnNote(name: column.name, reason: reason)
            }
            if !suspects.isEmpty {
                let others = columns.map(\.name).filter { name in !suspects.contains { $0.name == name } }
                throw DataSourceError.likelyIdentifierColumns(source: plan.sourceName, columns: suspects, others: others)
            }
        }

        // The labels: numbers, unless some label is text that is not a numeral.
        let textLabels = labels.contains { if case .text = $0 { return true } else { return false } }
        var labelKind: LabelKind = .strings
        if !textLabels {
            var sawReal = false, sawText = false
            for case .number(_, let form, _) in labels {
                if form == .real { sawReal = true } else if form == .text { sawText = true }
            }
            labelKind = .numeric(sawText ? .textNumerals : sawReal ? .real : .integer)
        }

        // The rows, by the null policy.
        var counts = RowCounts()
        counts.read = rowIDs.count
        let featureCount = kept.count
        var trainFeatures: [Float] = [], trainLabels: [Float] = [], trainNames: [String] = []
        var testFeatures: [Float] = [], testLabels: [Float] = [], testNames: [String] = []
        var rowValues = [Float](repeating: 0, count: featureCount)
        rows: for r in rowIDs.indices {
            let rowID = rowIDs[r]
            let labelValue: Float
            var labelName = ""
            switch labels[r] {
            case .missing:
                guard nullPolicy != .refuse else { throw DataSourceError.nullValue(column: labelColumn, row: rowID) }
                counts.skippedForMissingLabel += 1
                continue rows
            case .number(let v, _, let numeral):
                labelValue = Float(v)
                if textLabels { labelName = numeral ?? Self.labelText(v) }
            case .text(let text):
                labelValue = .nan
                labelName = text
            }
            var missingHere = 0
            for (j, f) in kept.enumerated() {
                let v = scans[f].values[r]
                if v.isNaN {
                    guard nullPolicy != .refuse else { throw DataSourceError.nullValue(column: scans[f].candidate.name, row: rowID) }
                    missingHere += 1
                    rowValues[j] = .nan
                } else {
                    rowValues[j] = Float(v)
                }
            }
            if splits[r] == .missing {
                guard nullPolicy != .refuse else { throw DataSourceError.nullValue(column: plan.useSplitColumn ?? "split", row: rowID) }
                counts.skippedForMissingSplit += 1
                continue rows
            }
            if missingHere > 0 {
                if nullPolicy == .skip { counts.skippedForMissingFeature += 1; continue rows }
                counts.missingValuesKept += missingHere
            }
            if splits[r] == .test {
                testFeatures.append(contentsOf: rowValues); testLabels.append(labelValue)
                if textLabels { testNames.append(labelName) }
            } else {
                trainFeatures.append(contentsOf: rowValues); trainLabels.append(labelValue)
                if textLabels { trainNames.append(labelName) }
            }
        }
        guard counts.used > 0 else { throw DataSourceError.allRowsSkipped(source: plan.sourceName, rows: counts) }
        guard !trainLabels.isEmpty else { throw DataSourceError.emptySplit(split: "train", source: plan.sourceName) }
        guard !testLabels.isEmpty else { throw DataSourceError.emptySplit(split: "test", source: plan.sourceName) }
        return LoadedSamples(
            train: Dataset(featureCount: featureCount, features: trainFeatures, labels: trainLabels),
            test: Dataset(featureCount: featureCount, features: testFeatures, labels: testLabels),
            columns: columns, skippedColumns: skippedColumns, labelColumn: labelColumn, labelKind: labelKind,
            trainLabelNames: textLabels ? trainNames : nil, testLabelNames: textLabels ? testNames : nil,
            rows: counts, nullPolicy: nullPolicy)
    }

    private static func scan(_ value: DatabaseValue, into scan: inout ColumnScan, rowID: Int64) throws {
        let name = scan.candidate.name
        switch ColumnValues.feature(value) {
        case .missing:
            scan.missing += 1
            scan.values.append(.nan)
        case .number(let v, let form):
            switch form {
            case .integer: break
            case .real: scan.sawReal = true
            case .text: scan.sawText = true
            case .boolean:
                scan.sawBooleanWord = true
                if scan.firstBooleanWord == nil, case .string(let s) = value.storage { scan.firstBooleanWord = (rowID, ColumnValues.trimmed(s)) }
            }
            if form != .boolean, v != 0, v != 1, scan.firstOtherNumber == nil { scan.firstOtherNumber = (rowID, v) }
            scan.values.append(v)
        case .notNumber(let shown):
            guard !scan.candidate.required else { throw DataSourceError.nonNumericValue(column: name, row: rowID, value: shown) }
            scan.rejection = "\(Self.typeName(scan.candidate.declaredType)) column; row \(rowID) holds '\(shown)'"
            scan.values = []
        case .outOfRange(let shown):
            guard !scan.candidate.required else { throw DataSourceError.valueOutOfRange(column: name, row: rowID, value: shown) }
            scan.rejection = "row \(rowID) holds \(shown), beyond float32's range"
            scan.values = []
        }
    }

    private static func typeName(_ declared: String?) -> String {
        guard let declared else { return "text" }
        return declared.isEmpty ? "untyped" : declared
    }

    private static func label(_ value: DatabaseValue, column: String, rowID: Int64) throws -> LabelCell {
        switch value.storage {
        case .null: return .missing
        case .int64(let v): return .number(Double(v), .integer, numeral: nil)
        case .double(let v):
            guard v.isFinite, abs(v) <= Double(Float.greatestFiniteMagnitude) else {
                throw DataSourceError.valueOutOfRange(column: column, row: rowID, value: "\(v)")
            }
            return .number(v, .real, numeral: nil)
        case .string(let s):
            let text = ColumnValues.trimmed(s)
            if text.isEmpty { return .missing }
            if let v = ColumnValues.numeral(text) {
                guard v.isFinite, abs(v) <= Double(Float.greatestFiniteMagnitude) else {
                    throw DataSourceError.valueOutOfRange(column: column, row: rowID, value: ColumnValues.shown(text))
                }
                return .number(v, .text, numeral: text)
            }
            return .text(text)
        case .blob(let b): throw DataSourceError.nonNumericValue(column: column, row: rowID, value: "<blob of \(b.count) bytes>")
        }
    }

    /// An INTEGER or REAL label among text labels becomes a name: an integral value as an integer (`1`), else
    /// Swift's shortest representation (`2.5`). (A numeral stored as TEXT keeps its text.)
    static func labelText(_ v: Double) -> String {
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }

    private static func split(_ value: DatabaseValue, column: String, rowID: Int64) throws -> SplitCell {
        switch value.storage {
        case .string(let s):
            switch ColumnValues.trimmed(s).lowercased() {
            case "train", "training": return .train
            case "test", "eval", "evaluation", "validation", "val": return .test
            case "": return .missing
            default: throw DataSourceError.unknownSplitValue(column: column, row: rowID, value: ColumnValues.shown(s))
            }
        case .null: return .missing
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
