/// Where an agent's rows come from. Every source (a SQLite file, a server database through ODBC) maps its
/// column types to `DatabaseCell`s and hands them to `SampleAssembler`, so that the features, labels, splits,
/// NULL policy and errors are the same whatever the database (docs/PROTOCOL.md §8).
public protocol DataSource: Sendable, CustomStringConvertible {
    /// How the rows become samples.
    var options: SampleOptions { get }
    /// Reads every row once. Blocks the calling thread for as long as the query runs: call it off any event
    /// loop and off Swift's cooperative thread pool (`DataSourceLoader` does).
    func load() throws -> LoadedSamples
}

/// A table, or any SQL query, of the source.
public enum SampleSelection: Sendable, Hashable {
    /// `featureColumns == nil`: the columns chosen as §8 says (numeric columns, and text columns whose
    /// every value is a number, except the label, the split column, primary-key and excluded columns).
    case table(name: String, featureColumns: [String]?)
    /// `featureColumns == nil`: every result column except the label, the split column and excluded
    /// columns; all must hold numbers.
    case query(sql: String, featureColumns: [String]? = nil)
}

/// How the rows of a table or query become samples: the same flags for every source.
public struct SampleOptions: Sendable, Hashable {
    public var selection: SampleSelection
    public var labelColumn: String
    /// Column whose value says `train` or `test` (also accepted: `eval`, `validation`). When nil, or
    /// absent from the table, rows are split deterministically by `testFraction` and `splitSeed`.
    public var splitColumn: String?
    public var testFraction: Double
    public var splitSeed: UInt64
    /// Columns never taken as features when the features are chosen automatically (`featureColumns == nil`).
    public var excludedColumns: [String]
    public var nullPolicy: NullPolicy
    /// Read at most this many rows, the first in row order (a table's key order, a query's result order);
    /// nil: every row. Bounds the agent's memory on a large table.
    public var maxRows: Int?
    /// Columns holding dates or timestamps (text, or a DATE/TIMESTAMP type), read as days since 1970-01-01
    /// UTC (`DateValues`). Each is a feature: taken automatically, or listed in `featureColumns` as well.
    public var dateColumns: [String]

    public init(selection: SampleSelection, labelColumn: String = "label", splitColumn: String? = "split",
                testFraction: Double = 0.2, splitSeed: UInt64 = 0, excludedColumns: [String] = [], nullPolicy: NullPolicy = .refuse,
                maxRows: Int? = nil, dateColumns: [String] = []) {
        self.maxRows = maxRows
        self.dateColumns = dateColumns
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
