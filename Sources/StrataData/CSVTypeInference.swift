/// The type a CSV column is stored as, and the SQLite type it is declared with. The declared types are the
/// ones `strata-agent` reads as intended: INTEGER, REAL and BOOLEAN have numeric affinity (features by
/// default; BOOLEAN 0/1 values read as a boolean feature), TEXT values are class names as a label and are
/// left out as features.
public enum CSVColumnType: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Whole numbers that fit a 64-bit integer.
    case integer
    /// Decimal numerals (`12`, `-0.2`, ` 3.5 `, `1e3`: `ColumnValues.numeral`), finite as a double.
    case real
    /// true/false, yes/no, t/f (any case) and 0/1, stored as 1/0.
    case boolean
    /// Anything, stored as it is.
    case text

    public var declaredType: String { rawValue.uppercased() }
    public var description: String { declaredType }

    /// "an integer", as in "'n/a' is not an integer".
    var article: String {
        switch self {
        case .integer: "an integer"
        case .real: "a number"
        case .boolean: "a boolean (true/false, yes/no, t/f, 0/1)"
        case .text: "text"
        }
    }

    /// The type whose values fit a column an existing table declares, by SQLite's affinity rules
    /// (https://www.sqlite.org/datatype3.html, 3.1) with BOOL first, as the agent reads it: `BOOLEAN` →
    /// boolean, `…INT…` → integer, `REAL`/`FLOAT`/`DOUBLE`/`NUMERIC`/`DECIMAL` → real; text, untyped, BLOB
    /// and anything else (`DATE`) → text, stored as it is.
    public init(declaredType: String) {
        let type = declaredType.uppercased()
        if type.contains("BOOL") { self = .boolean }
        else if type.contains("INT") { self = .integer }
        else if type.contains("CHAR") || type.contains("CLOB") || type.contains("TEXT") { self = .text }
        else if type.contains("REAL") || type.contains("FLOA") || type.contains("DOUB") || type.contains("NUM") || type.contains("DEC") { self = .real }
        else { self = .text }
    }

    /// The value `field` is stored as in a column of this type: NULL for an empty field (or only whitespace);
    /// nil when the field is not of this type. Numbers and booleans are read with surrounding whitespace
    /// ignored; text is kept as it is.
    public func cell(_ field: String) -> DatabaseCell? {
        let value = CSVColumnType.trimmed(field)
        if value.isEmpty { return .null }
        switch self {
        case .integer: return Int64(value).map { .integer($0) }
        case .real:
            guard let number = ColumnValues.numeral(value), number.isFinite else { return nil }
            return .real(number)
        case .boolean: return CSVColumnType.boolean(value).map { .integer($0 ? 1 : 0) }
        case .text: return .text(field)
        }
    }

    static func boolean(_ value: String) -> Bool? {
        switch value {
        case "1": true
        case "0": false
        default: ColumnValues.booleanWord(value)
        }
    }

    /// `ColumnValues.trimmed` (what the agent trims), without its cost for the common field that starts
    /// and ends with a visible ASCII character.
    static func trimmed(_ field: String) -> String {
        guard let first = field.utf8.first, let last = field.utf8.last else { return field }
        if first > 0x20, first < 0x7F, last > 0x20, last < 0x7F { return field }
        return ColumnValues.trimmed(field)
    }
}

/// What the import found in one column.
public struct CSVColumnSummary: Sendable, Hashable {
    /// Where a column's type came from.
    public enum TypeSource: Sendable, Hashable {
        case inferred
        /// `--type COL=TYPE`.
        case forced
        /// The declaration of the existing table rows are appended to.
        case table(declaredType: String)
    }

    public var name: String
    public var type: CSVColumnType
    public var typeSource: TypeSource
    public var nonEmpty: Int
    public var empty: Int
    /// Smallest and largest value of an integer or real column, nil for other types and for no values.
    public var minimum: Double?
    public var maximum: Double?
    /// An integer column whose values grow with every row, none missing: a row number or a sequence
    /// (`strata-agent` refuses such a column as a feature from 10 rows up: `ColumnValues.identifierReason`).
    public var increasesEveryRow: Bool
    /// The first value that is neither a number nor a boolean: why an inferred column is TEXT.
    public var firstText: Example?
    /// A TEXT column whose every value is a date or timestamp (`DateValues`): a feature with `--date-columns`.
    public var holdsDates = false

    /// `strata-agent` reads the column as numbers (a feature, unless left out): every type but TEXT, and TEXT
    /// whose values are all numerals or booleans (a `--type COL=text` column of numbers).
    public var readAsNumbers: Bool { nonEmpty > 0 && (type != .text || firstText == nil) }

    public struct Example: Sendable, Hashable {
        public var line: Int
        public var value: String
        public init(line: Int, value: String) {
            self.line = line
            self.value = value
        }
    }

    public init(name: String, type: CSVColumnType, typeSource: TypeSource = .inferred, nonEmpty: Int, empty: Int,
                minimum: Double? = nil, maximum: Double? = nil, increasesEveryRow: Bool = false, firstText: Example? = nil,
                holdsDates: Bool = false) {
        self.name = name
        self.type = type
        self.typeSource = typeSource
        self.nonEmpty = nonEmpty
        self.empty = empty
        self.minimum = minimum
        self.maximum = maximum
        self.increasesEveryRow = increasesEveryRow
        self.firstText = firstText
        self.holdsDates = holdsDates
    }
}

/// Infers each column's type from every row of a CSV file: INTEGER when every non-empty value is an integer
/// that fits 64 bits, else REAL when every one is a finite decimal numeral, else BOOLEAN when every one is
/// true/false, yes/no, t/f or 0/1, else TEXT. Empty fields are NULL and do not count; a column with no values
/// at all is TEXT. A type given for a column (`types`) is checked against every value instead. Keeps a few
/// counters per column, never the rows.
public struct CSVTypeInference: Sendable {
    /// The header's names, trimmed.
    public let columnNames: [String]
    public private(set) var rowCount = 0
    private var columns: [Column]

    private struct Column: Sendable {
        var given: CSVColumnType?
        var givenSource: CSVColumnSummary.TypeSource = .inferred
        var nonEmpty = 0
        var empty = 0
        var integers = true, reals = true, booleans = true, dates = true
        var integerRange: ClosedRange<Int64>?
        var realRange: ClosedRange<Double>?
        var lastInteger: Int64?
        var increasing = true
        var firstText: CSVColumnSummary.Example?

        mutating func note(integer v: Int64) {
            integerRange = integerRange.map { min($0.lowerBound, v)...max($0.upperBound, v) } ?? v...v
            if let last = lastInteger, v <= last { increasing = false }
            lastInteger = v
        }

        mutating func note(real v: Double) {
            realRange = realRange.map { min($0.lowerBound, v)...max($0.upperBound, v) } ?? v...v
        }

        /// Keeps the first value that is neither a number nor a boolean.
        mutating func note(text value: String, line: Int) {
            guard firstText == nil, CSVColumnType.boolean(value) == nil, !(ColumnValues.numeral(value)?.isFinite ?? false) else { return }
            firstText = CSVColumnSummary.Example(line: line, value: value)
        }
    }

    /// `header`: the file's first row. `types`: columns whose type is given (`--type`, or an existing table's),
    /// each with where it came from.
    public init(header: [String], types: [String: (type: CSVColumnType, source: CSVColumnSummary.TypeSource)] = [:]) throws(CSVImportError) {
        let names = header.map(ColumnValues.trimmed)
        try Self.validate(names)
        columnNames = names
        var columns = Array(repeating: Column(), count: names.count)
        for (name, given) in types {
            guard let index = Self.index(of: name, in: names) else { throw .unknownTypedColumn(column: name, columns: names) }
            columns[index].given = given.type
            columns[index].givenSource = given.source
        }
        self.columns = columns
    }

    /// The position of `name` among `names`, compared as SQLite compares column names (ASCII case ignored).
    public static func index(of name: String, in names: [String]) -> Int? {
        let key = sqliteFolded(name)
        return names.firstIndex { sqliteFolded($0) == key }
    }

    static func sqliteFolded(_ name: String) -> String {
        String(decoding: name.utf8.map { $0 >= 0x41 && $0 <= 0x5A ? $0 + 0x20 : $0 }, as: UTF8.self)
    }

    private static func validate(_ names: [String]) throws(CSVImportError) {
        if let empty = names.firstIndex(where: \.isEmpty) { throw .emptyColumnName(position: empty + 1) }
        // A header of numbers is a first row of data; a single numeric name ("2024") may be a real header.
        if names.count > 1, names.allSatisfy({ ColumnValues.numeral($0) != nil }) { throw .noHeader(firstRow: names) }
        var seen: [String: String] = [:]
        var duplicates: [String] = []
        for name in names {
            let key = sqliteFolded(name)
            if let first = seen[key] {
                if !duplicates.contains(first) { duplicates.append(first) }
            } else {
                seen[key] = name
            }
        }
        if !duplicates.isEmpty { throw .duplicateColumnNames(duplicates) }
    }

    /// Counts one row (as many fields as the header: `CSVReader` checks that). Throws when a value does not
    /// fit a given type.
    public mutating func add(_ record: CSVRecord) throws(CSVImportError) {
        rowCount += 1
        for (i, field) in zip(columns.indices, record.fields) {
            let value = CSVColumnType.trimmed(field)
            if value.isEmpty {
                columns[i].empty += 1
                columns[i].increasing = false
                continue
            }
            columns[i].nonEmpty += 1
            if let given = columns[i].given {
                guard let cell = given.cell(field) else {
                    throw .valueDoesNotFit(line: record.line, column: columnNames[i], value: value, type: given,
                                           because: Self.because(columns[i].givenSource, column: columnNames[i], type: given))
                }
                switch cell {
                case .integer(let v) where given == .integer: columns[i].note(integer: v)
                case .real(let v): columns[i].note(real: v)
                case .text: columns[i].note(text: value, line: record.line)
                default: break
                }
                continue
            }
            if columns[i].integers {
                if let v = Int64(value) { columns[i].note(integer: v) } else { columns[i].integers = false }
            }
            if columns[i].reals {
                if let v = ColumnValues.numeral(value), v.isFinite { columns[i].note(real: v) } else { columns[i].reals = false }
            }
            if columns[i].booleans, CSVColumnType.boolean(value) == nil { columns[i].booleans = false }
            if columns[i].dates, DateValues.days(sinceEpoch: value) == nil { columns[i].dates = false }
            if !columns[i].reals { columns[i].note(text: value, line: record.line) }
        }
    }

    private static func because(_ source: CSVColumnSummary.TypeSource, column: String, type: CSVColumnType) -> String {
        switch source {
        case .inferred, .forced: "--type \(column)=\(type.rawValue)"
        case .table(let declared): "the table declares it \(declared)"
        }
    }

    /// Each column's type and counts, over the rows added so far.
    public var summaries: [CSVColumnSummary] {
        zip(columnNames, columns).map { name, column in
            let type: CSVColumnType
            if let given = column.given { type = given }
            else if column.nonEmpty == 0 { type = .text }
            else if column.integers { type = .integer }
            else if column.reals { type = .real }
            else if column.booleans { type = .boolean }
            else { type = .text }
            var range: (Double, Double)?
            switch type {
            case .integer: range = column.integerRange.map { (Double($0.lowerBound), Double($0.upperBound)) }
            case .real: range = column.realRange.map { ($0.lowerBound, $0.upperBound) }
            case .boolean, .text: range = nil
            }
            return CSVColumnSummary(name: name, type: type, typeSource: column.given == nil ? .inferred : column.givenSource,
                                    nonEmpty: column.nonEmpty, empty: column.empty, minimum: range?.0, maximum: range?.1,
                                    increasesEveryRow: type == .integer && column.increasing && column.nonEmpty > 0,
                                    firstText: type == .text ? column.firstText : nil,
                                    holdsDates: type == .text && column.dates && column.nonEmpty > 0)
        }
    }

    /// The types to store each column as, in header order.
    public var types: [CSVColumnType] { summaries.map(\.type) }
}
