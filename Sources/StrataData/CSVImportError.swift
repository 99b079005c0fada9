/// Why a CSV file could not be imported. Each message says what to do next. Line numbers are the file's
/// physical lines, counted from 1 (the header is line 1), as an editor shows them; a row that spans lines
/// (a quoted field holding a newline) is named by the line it starts on.
public enum CSVImportError: Error, Hashable, Sendable, CustomStringConvertible {
    // The file.
    case fileNotFound(path: String)
    case unreadableFile(path: String, detail: String)
    case emptyFile(path: String)
    case noRows(path: String)

    // Its CSV.
    case notUTF8(line: Int)
    /// The first row holds only numbers: the file starts with data, not with column names.
    case noHeader(firstRow: [String])
    /// `position`: the column's place in the header, from 1.
    case emptyColumnName(position: Int)
    /// Names given more than once, compared as SQLite does (ASCII case ignored).
    case duplicateColumnNames([String])
    case raggedRow(line: Int, fields: Int, expected: Int, delimiter: UInt8)
    /// The header is one column holding another common delimiter: the file is separated by that one.
    case otherDelimiter(header: String, found: UInt8, given: UInt8)
    /// A quoted field still open at the end of the file.
    case unterminatedQuote(line: Int)
    /// `field`: the field's place in its row, from 1.
    case quoteInUnquotedField(line: Int, field: Int)
    case textAfterClosingQuote(line: Int, field: Int)
    /// A row longer than the reader's limit: not a CSV file, or a quote never closed.
    case rowTooLong(line: Int, limit: Int)

    // Types.
    case unknownTypedColumn(column: String, columns: [String])
    /// A value that is not of its column's type; `because` says where the type came from (a `--type`, the
    /// existing table's declaration).
    case valueDoesNotFit(line: Int, column: String, value: String, type: CSVColumnType, because: String)
    case typeWithAppend(table: String)

    // The database.
    case notADatabase(path: String, detail: String)
    case cannotOpenDatabase(path: String, detail: String)
    case tableExists(table: String, database: String)
    /// `--append` to a table whose columns are not the file's.
    case columnsDiffer(table: String, onlyInFile: [String], onlyInTable: [String])
    case databaseFailed(path: String, detail: String)

    public var description: String {
        switch self {
        case .fileNotFound(let path):
            return "\(path) does not exist: check the file name (the CSV file is the first argument)"
        case .unreadableFile(let path, let detail):
            return "cannot read \(path) (\(detail)): check that it is a file and that this user may read it"
        case .emptyFile(let path):
            return "\(path) is empty: a CSV file needs a header line with the column names, then one line per row"
        case .noRows(let path):
            return "\(path) has a header line but no rows: there is nothing to import"
        case .notUTF8(let line):
            return "line \(line) is not valid UTF-8: save the file as UTF-8 (a Latin-1 file: iconv -f latin1 -t utf-8 in.csv > in-utf8.csv)"
        case .noHeader(let firstRow):
            let shown = firstRow.prefix(8).map { ColumnValues.shown($0) }.joined(separator: ",") + (firstRow.count > 8 ? ",…" : "")
            return "the first line (\(shown)) holds only numbers, not column names: add a header line naming the columns (e.g. age,income,label)"
        case .emptyColumnName(let position):
            return "column \(position) of the header line has no name: name it (every column needs a name, which becomes the table's column name)"
        case .duplicateColumnNames(let names):
            return "the header line names \(names.map { "'\($0)'" }.joined(separator: ", ")) more than once (SQLite column names ignore case): rename the duplicates"
        case .raggedRow(let line, let fields, let expected, let delimiter):
            return "line \(line) has \(fields) field\(fields == 1 ? "" : "s"), the header has \(expected): fix the row, or quote a value that holds the delimiter \(Self.name(delimiter)) (\"a\(Self.shownDelimiter(delimiter))b\")"
        case .otherDelimiter(let header, let found, let given):
            return "the header line is one column, '\(ColumnValues.shown(header))', that holds \(Self.name(found)) but no \(Self.name(given)): give --delimiter '\(Self.shownDelimiter(found))' if that separates the columns (or quote the name if it is one column)"
        case .unterminatedQuote(let line):
            return "the quoted field that starts on line \(line) has no closing quote: close it, and double every quote inside a quoted field (\"say \"\"hi\"\"\")"
        case .quoteInUnquotedField(let line, let field):
            return "line \(line), field \(field): a quote inside a field that does not start with one: enclose the field in quotes and double the quote (\"5'10\"\"\")"
        case .textAfterClosingQuote(let line, let field):
            return "line \(line), field \(field): text after the closing quote of a quoted field: double a quote meant as data (\"say \"\"hi\"\"\"), or end the field at the quote"
        case .rowTooLong(let line, let limit):
            return "the row that starts on line \(line) is longer than \(limit / (1 << 20)) MiB: is this a CSV file (and --delimiter right)? A quote that is never closed also makes the rest of the file one field"
        case .unknownTypedColumn(let column, let columns):
            return "--type names column '\(column)', which the header does not have; columns: \(columns.joined(separator: ", "))"
        case .valueDoesNotFit(let line, let column, let value, let type, let because):
            return "line \(line), column '\(column)': '\(ColumnValues.shown(value))' is not \(type.article) (\(because)): fix the value, or give the column another type (--type \(column)=text keeps any value)"
        case .typeWithAppend(let table):
            return "--type cannot be combined with --append to the existing table '\(table)': its declared types decide; leave --type out, or use --replace to recreate the table"
        case .notADatabase(let path, let detail):
            return "\(path) is not a SQLite database (\(detail)): name a SQLite file, or a new path to create one"
        case .cannotOpenDatabase(let path, let detail):
            return "cannot open or create the database \(path) (\(detail)): check the path, that its folder exists, and that this user may write there"
        case .tableExists(let table, let database):
            return "table '\(table)' already exists in \(database): add --replace to drop and recreate it, or --append to add these rows to it"
        case .columnsDiffer(let table, let onlyInFile, let onlyInTable):
            var parts: [String] = []
            if !onlyInFile.isEmpty { parts.append("only in the file: \(onlyInFile.joined(separator: ", "))") }
            if !onlyInTable.isEmpty { parts.append("only in the table: \(onlyInTable.joined(separator: ", "))") }
            return "--append: the file's columns are not table '\(table)''s (\(parts.joined(separator: "; "))): rename the header's columns to match, or use --replace to recreate the table"
        case .databaseFailed(let path, let detail):
            return "writing to \(path) failed (\(detail)); the database was left as it was"
        }
    }

    static func name(_ delimiter: UInt8) -> String {
        switch delimiter {
        case UInt8(ascii: ","): "','"
        case UInt8(ascii: "\t"): "(tab)"
        case UInt8(ascii: ";"): "';'"
        default: "'\(shownDelimiter(delimiter))'"
        }
    }

    static func shownDelimiter(_ delimiter: UInt8) -> String {
        delimiter == UInt8(ascii: "\t") ? "\\t" : String(UnicodeScalar(delimiter))
    }
}
