import StrataCore

/// A column of a table or of a query's result, as the source describes it.
public struct SourceColumn: Sendable, Hashable {
    /// What a source knows of a column's values from its type.
    public enum Typing: Sendable, Hashable {
        /// A numeric type (integer, floating, decimal, boolean): its values must be numbers when it is taken.
        case numeric
        /// Text or untyped: taken automatically only when every value turns out to be a number.
        case textual
        /// Never a number (a date, a time, binary data): left out of an automatic choice, refused when named.
        case unusable
    }

    public var name: String
    /// The type as the database names it (`INTEGER`, `DECIMAL(10,2)`, `numeric`, `bool`); nil when unknown
    /// (a SQLite query's columns).
    public var declaredType: String?
    public var typing: Typing
    public var isPrimaryKey: Bool

    public init(name: String, declaredType: String?, typing: Typing, isPrimaryKey: Bool = false) {
        self.name = name
        self.declaredType = declaredType
        self.typing = typing
        self.isPrimaryKey = isPrimaryKey
    }
}

/// Which columns of a table or query to read, chosen from the source's columns by `SampleOptions`: the
/// label, the split column if there is one, then every candidate feature, in that order.
public struct SamplePlan: Sendable {
    /// A column that may become a feature. `required`: its values must be numbers (a numeric type, a listed
    /// column, a query's column); otherwise (a text or untyped column chosen automatically) it is taken only
    /// if every value turns out to be a number.
    struct Candidate: Sendable {
        var name: String
        var declaredType: String?
        var required: Bool
        /// Named in `--date-columns`: its values are dates, read as days since 1970-01-01 UTC.
        var isDate = false
    }

    /// `table 'visits'`, `the query`: how errors name the source.
    public let sourceName: String
    /// The columns to read, in this order: the label, the split column (when `splitColumn` is not nil), then
    /// every candidate feature. A source selects them (by name or position) and hands their values to
    /// `SampleAssembler.add` in this order.
    public let columns: [String]
    /// The split column found among the source's columns, nil when rows are split by their key.
    public let splitColumn: String?
    let candidates: [Candidate]
    /// The user named the features: nothing is guessed, so no identifier check.
    let explicit: Bool
    /// Rows come in insertion order (a table), not in a query's own order.
    let isTable: Bool
    /// Columns left out for their type before any row was read.
    let typeNotes: [ColumnNote]
    /// The source's column names in its order: columns left out are listed in it.
    let sourceOrder: [String]

    /// Chooses the columns of a table (`isTable`) or of a query's result. Throws the errors that name a
    /// missing label, split, excluded or listed column, a listed column whose type is unusable, or a source
    /// with no feature column.
    public init(options: SampleOptions, columns: [SourceColumn], sourceName: String) throws {
        self.sourceName = sourceName
        let names = columns.map(\.name)
        let requested: [String]?
        switch options.selection {
        case .table(_, let listed): requested = listed; isTable = true
        case .query(_, let listed): requested = listed; isTable = false
        }
        let (useSplit, explicitColumns) = try Self.checkNames(names, requested: requested, options: options, sourceName: sourceName)
        var notes: [ColumnNote] = []
        var candidates: [Candidate] = []
        if let explicitColumns {
            for name in explicitColumns {
                let column = columns.first { $0.name == name }!
                if options.dateColumns.contains(name) {
                    candidates.append(Candidate(name: name, declaredType: column.declaredType, required: true, isDate: true))
                    continue
                }
                guard column.typing != .unusable else {
                    throw DataSourceError.unusableColumnType(column: name, type: column.declaredType ?? "unknown", source: sourceName)
                }
                candidates.append(Candidate(name: name, declaredType: column.declaredType, required: true))
            }
        } else {
            for column in columns where column.name != options.labelColumn && column.name != useSplit
                && !options.excludedColumns.contains(column.name) {
                if options.dateColumns.contains(column.name) {
                    candidates.append(Candidate(name: column.name, declaredType: column.declaredType, required: true, isDate: true))
                    continue
                }
                if isTable {
                    if column.isPrimaryKey { continue }
                    if column.typing == .unusable {
                        notes.append(ColumnNote(name: column.name, reason: "\(column.declaredType ?? "unknown") column, not a number\(SampleAssembler.dateHint(column.declaredType, column.name))"))
                        continue
                    }
                    candidates.append(Candidate(name: column.name, declaredType: column.declaredType, required: column.typing == .numeric))
                } else {
                    guard column.typing != .unusable else {
                        throw DataSourceError.unusableColumnType(column: column.name, type: column.declaredType ?? "unknown", source: sourceName)
                    }
                    candidates.append(Candidate(name: column.name, declaredType: column.declaredType, required: true))
                }
            }
        }
        guard !candidates.isEmpty else { throw DataSourceError.noFeatureColumns(source: sourceName, skipped: notes) }
        self.candidates = candidates
        self.splitColumn = useSplit
        self.explicit = explicitColumns != nil
        self.typeNotes = notes
        self.sourceOrder = names
        self.columns = [options.labelColumn] + (useSplit.map { [$0] } ?? []) + candidates.map(\.name)
    }

    /// Checks the label, the split, the excluded and the requested columns against the source's columns.
    private static func checkNames(_ names: [String], requested: [String]?, options: SampleOptions,
                                   sourceName: String) throws -> (split: String?, requested: [String]?) {
        guard names.contains(options.labelColumn) else {
            throw DataSourceError.columnNotFound(column: options.labelColumn, source: sourceName, available: names)
        }
        for column in options.excludedColumns where !names.contains(column) {
            throw DataSourceError.columnNotFound(column: column, source: sourceName, available: names)
        }
        let split = options.splitColumn.flatMap { names.contains($0) ? $0 : nil }
        for column in options.dateColumns {
            guard names.contains(column) else { throw DataSourceError.columnNotFound(column: column, source: sourceName, available: names) }
            let reason: String? =
                column == options.labelColumn ? "it is the label column" :
                column == split ? "it is the split column" :
                options.excludedColumns.contains(column) ? "--exclude-columns leaves it out" :
                requested.map { !$0.isEmpty && !$0.contains(column) } == true ? "--feature-columns does not list it" : nil
            if let reason { throw DataSourceError.dateColumnNotAFeature(column: column, reason: reason) }
        }
        guard let requested, !requested.isEmpty else { return (split, nil) }
        var seen = Set<String>()
        for column in requested {
            guard names.contains(column) else { throw DataSourceError.columnNotFound(column: column, source: sourceName, available: names) }
            guard column != options.labelColumn else { throw DataSourceError.labelAmongFeatures(column: column) }
            guard seen.insert(column).inserted else { throw DataSourceError.duplicateFeatureColumn(column: column) }
        }
        return (split, requested)
    }
}

/// Turns the rows of a `SamplePlan`'s columns into `LoadedSamples`: detects each feature column's kind,
/// reads labels and splits, applies the null policy, refuses identifiers chosen automatically. Every value is
/// untrusted: nothing here traps on what a database holds.
public struct SampleAssembler {
    /// What one candidate column's values turned out to be, over every row read.
    private struct ColumnScan {
        var candidate: SamplePlan.Candidate
        /// One per row read; NaN where the value is missing. Float32, what a feature becomes anyway: half the
        /// memory of a double while a large table is read (docs/PERFORMANCE.md, "Reading a table").
        var values: [Float] = []
        /// Why a non-required column is not used (its values are dropped).
        var rejection: String?
        var missing = 0
        var sawReal = false, sawText = false, sawBooleanWord = false
        var firstBooleanWord: (row: Int64, value: String)?
        var firstOtherNumber: (row: Int64, value: Double)?

        init(_ candidate: SamplePlan.Candidate) { self.candidate = candidate }

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

    public let plan: SamplePlan
    public let options: SampleOptions
    private var scans: [ColumnScan]
    private var rowIDs: [Int64] = []
    private var labels: [LabelCell] = []
    private var splits: [SplitCell] = []
    private var index: Int64 = 0

    public init(plan: SamplePlan, options: SampleOptions) {
        self.plan = plan
        self.options = options
        scans = plan.candidates.map { ColumnScan($0) }
    }

    /// Rows added so far.
    public var rowCount: Int { rowIDs.count }
    private var stoppedAtLimit = false

    /// `options.maxRows` rows were added: the source must stop reading (calling `stop()` if rows remain).
    public var isFull: Bool { options.maxRows.map { rowIDs.count >= $0 } ?? false }

    /// The source had more rows than `options.maxRows`: the log says the read stopped there.
    public mutating func stop() { stoppedAtLimit = true }

    /// Adds one row. `rowID`: the row's key (SQLite's rowid, a table's integer primary key), used in error
    /// messages and for the deterministic split; nil: its position in the result (1, 2, …). `cell(i)`: the value
    /// of `plan.columns[i]` in this row.
    public mutating func add(rowID key: Int64?, cell: (Int) -> DatabaseCell) throws {
        index += 1
        let rowID = key ?? index
        rowIDs.append(rowID)
        labels.append(try Self.label(cell(0), column: options.labelColumn, rowID: rowID))
        if let split = plan.splitColumn {
            splits.append(try Self.split(cell(1), column: split, rowID: rowID))
        } else {
            splits.append(Self.deterministicTest(rowKey: UInt64(bitPattern: rowID), seed: options.splitSeed, fraction: options.testFraction) ? .test : .train)
        }
        let featureOffset = plan.splitColumn == nil ? 1 : 2
        for f in scans.indices where scans[f].rejection == nil {
            try Self.scan(cell(featureOffset + f), into: &scans[f], rowID: rowID)
        }
    }

    /// The samples of every row added.
    public func finish() throws -> LoadedSamples {
        guard index > 0 else { throw DataSourceError.emptyResult(source: plan.sourceName) }
        let labelColumn = options.labelColumn, nullPolicy = options.nullPolicy

        // The columns: kinds, the ones left out, identifiers.
        var columns: [FeatureColumn] = []
        var kept: [Int] = []
        var skippedColumns: [ColumnNote] = plan.typeNotes
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
            else if scan.candidate.isDate { kind = .date }
            else if scan.sawBooleanWord || (scan.declaresBoolean && scan.firstOtherNumber == nil) { kind = .boolean }
            else if scan.sawText { kind = .textNumerals }
            else if scan.sawReal { kind = .real }
            else { kind = .integer }
            columns.append(FeatureColumn(name: name, kind: kind, declaredType: scan.candidate.declaredType, missingCount: scan.missing))
            kept.append(f)
        }
        if !plan.typeNotes.isEmpty {
            let position = Dictionary(plan.sourceOrder.enumerated().map { ($1, $0) }, uniquingKeysWith: { first, _ in first })
            skippedColumns.sort { (position[$0.name] ?? 0) < (position[$1.name] ?? 0) }
        }
        guard !kept.isEmpty else { throw DataSourceError.noFeatureColumns(source: plan.sourceName, skipped: skippedColumns) }
        if !plan.explicit {
            let suspects = zip(kept, columns).compactMap { f, column -> ColumnNote? in
                // Dates often increase with every row (an event log) without being identifiers.
                guard column.kind != .boolean, column.kind != .date,
                      let reason = ColumnValues.identifierReason(name: column.name, values: scans[f].values.map(Double.init),
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
        counts.stoppedAt = stoppedAtLimit ? options.maxRows : nil
        let featureCount = kept.count
        var trainFeatures: [Float] = [], trainLabels: [Float] = [], trainNames: [String] = []
        var testFeatures: [Float] = [], testLabels: [Float] = [], testNames: [String] = []
        var rowValues = [Float](repeating: 0, count: featureCount)
        // Reserved at their final size: grown by doubling, the arrays would briefly need up to three times it.
        let testRows = splits.reduce(0) { $0 + ($1 == .test ? 1 : 0) }
        trainFeatures.reserveCapacity((rowIDs.count - testRows) * featureCount)
        trainLabels.reserveCapacity(rowIDs.count - testRows)
        testFeatures.reserveCapacity(testRows * featureCount)
        testLabels.reserveCapacity(testRows)
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
                    rowValues[j] = v
                }
            }
            if splits[r] == .missing {
                guard nullPolicy != .refuse else { throw DataSourceError.nullValue(column: plan.splitColumn ?? "split", row: rowID) }
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

    private static func scan(_ value: DatabaseCell, into scan: inout ColumnScan, rowID: Int64) throws {
        let name = scan.candidate.name
        switch scan.candidate.isDate ? DateValues.feature(value) : ColumnValues.feature(value) {
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
                if scan.firstBooleanWord == nil, case .text(let s) = value { scan.firstBooleanWord = (rowID, ColumnValues.trimmed(s)) }
            }
            if form != .boolean, v != 0, v != 1, scan.firstOtherNumber == nil { scan.firstOtherNumber = (rowID, v) }
            scan.values.append(Float(v))   // within float32's range: checked by ColumnValues
        case .notNumber(let shown):
            if scan.candidate.isDate { throw DataSourceError.notADate(column: name, row: rowID, value: shown) }
            guard !scan.candidate.required else { throw DataSourceError.nonNumericValue(column: name, row: rowID, value: shown) }
            let hint = DateValues.days(sinceEpoch: shown) != nil ? " (a date: --date-columns \(name) reads it)" : ""
            scan.rejection = "\(Self.typeName(scan.candidate.declaredType)) column; row \(rowID) holds '\(shown)'\(hint)"
            scan.values = []
        case .outOfRange(let shown):
            guard !scan.candidate.required else { throw DataSourceError.valueOutOfRange(column: name, row: rowID, value: shown) }
            scan.rejection = "row \(rowID) holds \(shown), beyond float32's range"
            scan.values = []
        }
    }

    /// A date or time type left out of an automatic choice: how to take it.
    static func dateHint(_ declared: String?, _ name: String) -> String {
        let type = declared?.lowercased() ?? ""
        return type.contains("date") || type.contains("timestamp") ? " (--date-columns \(name) reads it as days since 1970-01-01)" : ""
    }

    private static func typeName(_ declared: String?) -> String {
        guard let declared else { return "text" }
        return declared.isEmpty ? "untyped" : declared
    }

    private static func label(_ value: DatabaseCell, column: String, rowID: Int64) throws -> LabelCell {
        switch value {
        case .null: return .missing
        case .integer(let v): return .number(Double(v), .integer, numeral: nil)
        case .real(let v):
            guard v.isFinite, abs(v) <= Double(Float.greatestFiniteMagnitude) else {
                throw v.isNaN ? DataSourceError.nonNumericValue(column: column, row: rowID, value: "\(v)")
                              : DataSourceError.valueOutOfRange(column: column, row: rowID, value: "\(v)")
            }
            return .number(v, .real, numeral: nil)
        case .text(let s):
            let text = ColumnValues.trimmed(s)
            if text.isEmpty { return .missing }
            if let v = ColumnValues.numeral(text) {
                guard v.isFinite, abs(v) <= Double(Float.greatestFiniteMagnitude) else {
                    throw DataSourceError.valueOutOfRange(column: column, row: rowID, value: ColumnValues.shown(text))
                }
                return .number(v, .text, numeral: text)
            }
            return .text(text)
        case .blob(let count): throw DataSourceError.nonNumericValue(column: column, row: rowID, value: "<blob of \(count) bytes>")
        }
    }

    /// An INTEGER or REAL label among text labels becomes a name: an integral value as an integer (`1`), else
    /// Swift's shortest representation (`2.5`). (A numeral stored as TEXT keeps its text.)
    static func labelText(_ v: Double) -> String {
        if v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }

    private static func split(_ value: DatabaseCell, column: String, rowID: Int64) throws -> SplitCell {
        switch value {
        case .text(let s):
            switch ColumnValues.trimmed(s).lowercased() {
            case "train", "training": return .train
            case "test", "eval", "evaluation", "validation", "val": return .test
            case "": return .missing
            default: throw DataSourceError.unknownSplitValue(column: column, row: rowID, value: ColumnValues.shown(s))
            }
        case .null: return .missing
        case .integer(let v): throw DataSourceError.unknownSplitValue(column: column, row: rowID, value: "\(v)")
        case .real(let v): throw DataSourceError.unknownSplitValue(column: column, row: rowID, value: "\(v)")
        case .blob(let count): throw DataSourceError.unknownSplitValue(column: column, row: rowID, value: "<blob of \(count) bytes>")
        }
    }

    /// A row is a test row when a seeded hash of its key falls below `fraction`: stable across runs and
    /// row order.
    public static func deterministicTest(rowKey: UInt64, seed: UInt64, fraction: Double) -> Bool {
        var z = rowKey &+ seed &* 0x9E37_79B9_7F4A_7C15 &+ 0x632B_E59B_D9B4_E019
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        z ^= z >> 31
        return Double(z >> 11) / Double(1 << 53) < fraction
    }
}
