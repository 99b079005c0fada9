import Foundation

/// What an import did, for the data owner: the rows, each column's type and counts, and the `strata-agent`
/// flags that read the table.
public struct CSVImportReport: Sendable, Hashable, CustomStringConvertible {
    public enum Outcome: Sendable, Hashable {
        /// `--dry-run`: nothing was written.
        case dryRun
        case created
        case replaced
        /// `rowsInTable`: the table's rows after the append.
        case appended(rowsInTable: Int)
    }

    public var file: String
    public var database: String
    public var table: String
    public var rows: Int
    public var columns: [CSVColumnSummary]
    public var outcome: Outcome

    public init(file: String, database: String, table: String, rows: Int, columns: [CSVColumnSummary], outcome: Outcome) {
        self.file = file
        self.database = database
        self.table = table
        self.rows = rows
        self.columns = columns
        self.outcome = outcome
    }

    /// Names a label column usually has, in the order they are preferred.
    static let labelNames = ["label", "target", "class", "y", "outcome"]

    /// The column named like a label, if one is.
    public var suggestedLabel: String? {
        for candidate in Self.labelNames {
            if let column = columns.first(where: { $0.name.lowercased() == candidate }) { return column.name }
        }
        return nil
    }

    /// Numeric columns `strata-agent` would refuse as features because they look like row identifiers (by
    /// name, or integers growing every row over 10 rows or more), with the reason.
    public var identifierColumns: [(name: String, reason: String)] {
        columns.compactMap { column in
            guard column.readAsNumbers, column.name != suggestedLabel else { return nil }
            if let reason = ColumnValues.identifierReason(name: column.name, values: [], rowOrderIsInsertionOrder: true) {
                return (column.name, reason)
            }
            if column.increasesEveryRow, column.nonEmpty >= 10 { return (column.name, "its values increase with every row") }
            return nil
        }
    }

    /// The report, one line each.
    public var lines: [String] {
        var lines: [String] = []
        let rowWord = rows == 1 ? "row" : "rows"
        switch outcome {
        case .dryRun:
            lines.append("dry run: \(rows) \(rowWord) of \(file) would go into table '\(table)' of \(database); nothing was written")
        case .created:
            lines.append("imported \(rows) \(rowWord) from \(file) into table '\(table)' of \(database) (new table)")
        case .replaced:
            lines.append("imported \(rows) \(rowWord) from \(file) into table '\(table)' of \(database) (the table was replaced)")
        case .appended(let total):
            lines.append("appended \(rows) \(rowWord) from \(file) to table '\(table)' of \(database) (now \(total) rows)")
        }
        let identifiers = Dictionary(identifierColumns.map { ($0.name, $0.reason) }, uniquingKeysWith: { first, _ in first })
        var table = [["column", "type", "values", "empty", "min", "max", "note"]]
        for column in columns {
            var notes: [String] = []
            switch column.typeSource {
            case .inferred: break
            case .forced: notes.append("--type")
            case .table(let declared): notes.append("the table's \(declared)")
            }
            if column.nonEmpty == 0 { notes.append("no values") }
            if column.holdsDates, column.name != suggestedLabel {
                notes.append("dates: a feature with --date-columns (days since 1970-01-01)")
            } else if let example = column.firstText, column.name != suggestedLabel {
                // Why a column the owner expected to be numeric is not, and that the agent will not use it.
                notes.append("text (line \(example.line): '\(ColumnValues.shown(example.value))'): not a feature; class names as a label")
            }
            if let reason = identifiers[column.name] { notes.append("a row identifier? \(reason)") }
            table.append([column.name, column.type.declaredType, "\(column.nonEmpty)", "\(column.empty)",
                          column.minimum.map(Self.number) ?? "", column.maximum.map(Self.number) ?? "", notes.joined(separator: "; ")])
        }
        lines += Self.aligned(table, rightAligned: [2, 3]).map { "  " + $0 }
        lines += hint
        return lines
    }

    public var description: String { lines.joined(separator: "\n") }

    /// The next step: the agent's flags for this table, and what it will refuse unless told.
    var hint: [String] {
        var flags = ["--database", Self.shellQuoted(database), "--table", Self.shellQuoted(table)]
        let label = suggestedLabel
        flags += ["--label-column", label.map(Self.shellQuoted) ?? "COLUMN"]
        let identifiers = identifierColumns.map(\.name)
        if !identifiers.isEmpty { flags += ["--exclude-columns", Self.shellQuoted(identifiers.joined(separator: ","))] }
        let dates = columns.filter { $0.holdsDates && $0.name != label }.map(\.name)
        if !dates.isEmpty { flags += ["--date-columns", Self.shellQuoted(dates.joined(separator: ","))] }
        var lines = ["next: strata-agent \(flags.joined(separator: " ")) ..."]
        if label == nil {
            lines.append("  COLUMN: the column to predict (no column is named \(Self.labelNames.joined(separator: "/")))")
        }
        if !identifiers.isEmpty {
            lines.append("  --exclude-columns: the agent refuses a feature that looks like a row identifier; name the features with --feature-columns instead if you want one of them")
        }
        // Empty values in a column the agent reads stop it under its default --null-policy refuse.
        let read = columns.filter { ($0.readAsNumbers || $0.name == label || dates.contains($0.name)) && !identifiers.contains($0.name) }
        let withEmpty = read.filter { $0.empty > 0 && $0.nonEmpty > 0 }.map(\.name)
        if !withEmpty.isEmpty {
            lines.append("  empty values in \(withEmpty.joined(separator: ", ")): the agent refuses them unless given --null-policy skip (leave those rows out) or impute (fill features with the federation's mean)")
        }
        return lines
    }

    /// 12, 0.5, 1e+20: integral values without a decimal point.
    static func number(_ value: Double) -> String {
        if let integer = Int64(exactly: value) { return "\(integer)" }
        return "\(value)"
    }

    static func aligned(_ rows: [[String]], rightAligned: Set<Int>) -> [String] {
        let widths = rows[0].indices.map { column in rows.map { $0[column].count }.max() ?? 0 }
        return rows.map { row in
            row.indices.map { column in
                let pad = String(repeating: " ", count: widths[column] - row[column].count)
                return rightAligned.contains(column) ? pad + row[column] : row[column] + pad
            }
            .joined(separator: "  ")
            .trimmingTrailingSpaces()
        }
    }

    /// A word a POSIX shell reads back as itself.
    static func shellQuoted(_ word: String) -> String {
        let safe = word.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "/")
                || byte == UInt8(ascii: ",") || byte == UInt8(ascii: ":") || byte == UInt8(ascii: "=") || byte == UInt8(ascii: "+")
        }
        if safe, !word.isEmpty { return word }
        return "'" + word.replacingOccurrences(of: "'", with: #"'\''"#) + "'"
    }
}

extension String {
    fileprivate func trimmingTrailingSpaces() -> String {
        var text = self
        while text.last == " " { text.removeLast() }
        return text
    }
}
