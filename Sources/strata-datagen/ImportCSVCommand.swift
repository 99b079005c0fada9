import ArgumentParser
import Foundation
import StrataData
import StrataStore

/// `strata-datagen import-csv`: a data owner's CSV file into a SQLite table that `strata-agent` reads.
struct ImportCSVCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "import-csv",
        abstract: "Import a CSV file into a table of a SQLite database, for strata-agent --database DB --table T.",
        discussion: """
            The file is CSV as RFC 4180 writes it: a header line naming the columns, then one line per row; a field \
            in double quotes may hold the delimiter, line breaks and doubled quotes (""); LF or CRLF line ends; \
            UTF-8, with or without a byte order mark. Blank lines are skipped; a row with more or fewer fields than \
            the header stops the import, naming its line.

            Each column's type is inferred from every row: INTEGER if every value is a whole number (64-bit), else \
            REAL if every value is a decimal numeral (12, -0.2, ' 3.5 ', 1e3), else BOOLEAN if every value is \
            true/false, yes/no, t/f (any case) or 0/1 (stored as 1/0), else TEXT (stored as it is). Empty fields \
            (or only spaces) are NULL and do not count; a column with no values is TEXT. strata-agent takes the \
            INTEGER, REAL and BOOLEAN columns as features and a TEXT label's values as class names. No key column \
            is added: the agent numbers rows by rowid.

            The file is read twice (types, then rows), a chunk at a time; all rows are inserted in one transaction, \
            so an error leaves the database as it was. Progress goes to stderr every few seconds; the report \
            (each column's type, values, empty fields, range, and the strata-agent flags to use) to stdout.

            Examples:
              strata-datagen import-csv people.csv --table people --database data.sqlite
              strata-datagen import-csv people.csv --table people --database data.sqlite \\
                  --type zip=text --replace
              strata-datagen import-csv march.tsv --table people --database data.sqlite \\
                  --append
            and then, as the report says:
              strata-agent --database data.sqlite --table people --label-column risk ...
            """)

    @Argument(help: "The CSV file: a header line with the column names, then the rows.")
    var file: String

    @Option(name: .long, help: "Table to create (a name with spaces or quotes is fine).")
    var table: String

    @Option(name: .long, help: "SQLite database file to create the table in; created if missing.")
    var database: String

    @Option(name: .long, help: ArgumentHelp(
        "Field delimiter, one character: ',' ';' '|', or '\\t' (or 'tab') for a tab. Default: a tab for a .tsv or .tab file, else a comma.",
        valueName: "char"))
    var delimiter: String?

    @Option(name: .customLong("type"), help: ArgumentHelp(
        "A column's type instead of the inferred one: integer, real, boolean or text (repeatable). A value that does not fit stops the import, naming its line. Example: --type zip=text keeps leading zeros.",
        valueName: "column=type"))
    var types: [String] = []

    @Flag(name: .long, help: "If the table exists, drop it and create it anew (in the same transaction as the rows).")
    var replace = false

    @Flag(name: .long, help: "If the table exists, add the rows to it: the file's columns must be the table's (by name, any order); its declared types decide. Creates the table if missing.")
    var append = false

    @Flag(name: .long, help: "Read the file and report the types it would create; write nothing.")
    var dryRun = false

    func validate() throws {
        if replace && append { throw ValidationError("--replace and --append exclude each other: --replace drops the table, --append adds to it") }
        guard !table.isEmpty else { throw ValidationError("--table must name a table") }
        _ = try Self.delimiterByte(delimiter, file: file)
        _ = try Self.givenTypes(types)
    }

    func run() throws {
        let importer = CSVImport(file: file, database: database, table: table, delimiter: try Self.delimiterByte(delimiter, file: file),
                                 types: try Self.givenTypes(types), existingTable: replace ? .replace : append ? .append : .refuse,
                                 dryRun: dryRun)
        var progress = ImportProgress(file: file)
        let report = try importer.run { progress.update($0) }
        print(report.description)
    }

    /// `,` by default, a tab for a .tsv or .tab file; `\t` or `tab` for a tab; otherwise one ASCII character
    /// that is neither a quote nor a line end.
    static func delimiterByte(_ given: String?, file: String) throws -> UInt8 {
        guard let given else {
            let suffix = (file as NSString).pathExtension.lowercased()
            return suffix == "tsv" || suffix == "tab" ? UInt8(ascii: "\t") : UInt8(ascii: ",")
        }
        if given == "\\t" || given.lowercased() == "tab" { return UInt8(ascii: "\t") }
        guard given.utf8.count == 1, let byte = given.utf8.first, byte < 0x80,
              byte != UInt8(ascii: "\""), byte != UInt8(ascii: "\n"), byte != UInt8(ascii: "\r") else {
            throw ValidationError("--delimiter must be one ASCII character other than a quote or a line end (',', ';', '|'), or '\\t' for a tab; got '\(given)'")
        }
        return byte
    }

    /// `--type COL=TYPE` flags by column. The type follows the last `=`, so a column name may hold one.
    static func givenTypes(_ flags: [String]) throws -> [String: CSVColumnType] {
        var types: [String: CSVColumnType] = [:]
        for flag in flags {
            guard let separator = flag.lastIndex(of: "=") else {
                throw ValidationError("--type \(flag): give COLUMN=TYPE, e.g. --type zip=text")
            }
            let column = ColumnValues.trimmed(String(flag[..<separator]))
            let name = ColumnValues.trimmed(String(flag[flag.index(after: separator)...])).lowercased()
            guard !column.isEmpty else { throw ValidationError("--type \(flag): name the column before '='") }
            guard let type = CSVColumnType(rawValue: name) else {
                throw ValidationError("--type \(flag): the type must be integer, real, boolean or text")
            }
            guard types[column] == nil else { throw ValidationError("--type names column '\(column)' twice") }
            types[column] = type
        }
        return types
    }
}
