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
    /// A column whose type cannot be read as a number (a date, a binary or a spatial column), named or chosen
    /// from a query. (Chosen automatically from a table, such a column is left out and listed instead.)
    case unusableColumnType(column: String, type: String, source: String)
    /// A value of a `--date-columns` column that is not a date.
    case notADate(column: String, row: Int64, value: String)
    /// A `--date-columns` column that cannot be a feature.
    case dateColumnNotAFeature(column: String, reason: String)

    // Server databases (ODBC). `connection`: the connection string as given, which never holds the password.

    /// The ODBC driver manager knows no such data source name, or cannot load the driver (SQLSTATE IM002, IM003).
    case odbcDriverNotFound(connection: String, detail: String, drivers: [String], dataSources: [String])
    /// The server could not be reached: wrong host or port, server down, a firewall (SQLSTATE 08001, 08S01, HYT00).
    case serverUnreachable(connection: String, detail: String)
    /// The server refused the user name or the password (SQLSTATE 28000, 28P01). The password is never shown.
    case authenticationFailed(connection: String, detail: String)
    /// The server has no database of that name.
    case databaseNotFound(connection: String, detail: String)
    /// The agent's database user may not read the table (SQLSTATE 42501, MariaDB 1142).
    case permissionDenied(source: String, detail: String)
    /// The server refused to read a table it does not list to this user (MariaDB/MySQL hide a table the user has
    /// no privilege on): missing, or not granted.
    case tableNotFoundOrDenied(table: String, available: [String], detail: String)
    /// The password file given could not be read, or is empty.
    case passwordFileUnreadable(path: String, detail: String)
    /// Any other ODBC failure: what was being done, the SQLSTATE and the driver's message.
    case odbcFailed(operation: String, state: String, message: String)

    public var description: String {
        switch self {
        case .fileNotFound(let path):
            return "database file \(path) does not exist: check --database (generate sample data with strata-datagen)"
        case .notADatabase(let path, let detail):
            return "\(path) is not a readable SQLite database (\(detail)): check the path, or restore the file from a backup"
        case .tableNotFound(let table, let available):
            let listed = available.prefix(30).joined(separator: ", ") + (available.count > 30 ? ", … (\(available.count) in all)" : "")
            return "table '\(table)' not found; tables in the database: \(available.isEmpty ? "none" : listed). Set --table, or use --query"
        case .columnNotFound(let column, let source, let available):
            return "column '\(column)' not found in \(source); columns: \(available.joined(separator: ", ")). Set --label-column / --split-column / --feature-columns / --exclude-columns"
        case .noFeatureColumns(let source, let skipped):
            let why = skipped.isEmpty ? "" : " (left out: \(skipped.map(\.description).joined(separator: "; ")))"
            return "\(source) has no numeric feature columns besides the label and split\(why): list them with --feature-columns"
        case .nonNumericValue(let column, let row, let value) where DateValues.days(sinceEpoch: value) != nil:
            return "row \(row), column '\(column)' holds '\(value)', a date, not a number: read the column as days since 1970-01-01 with --date-columns \(column), or leave it out with --exclude-columns or --feature-columns"
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
        case .unusableColumnType(let column, let type, let source):
            return "column '\(column)' of \(source) has type \(type), which the agent cannot read as a number: leave it out (--exclude-columns \(column), or a --feature-columns list without it), read a date or timestamp column as days since 1970-01-01 with --date-columns \(column), or convert it in a --query"
        case .notADate(let column, let row, let value):
            return "column '\(column)', row \(row): '\(value)' is not a date; --date-columns reads text dates and timestamps such as 2024-03-01, 2024-03-01 12:34:56 or 2024-03-01T12:34:56.5+02:00 (a DATE or TIMESTAMP column reads as these). A column that already holds numbers (Unix time, a Julian day) needs no --date-columns: remove it from the list; otherwise correct the value, or convert it in a --query"
        case .dateColumnNotAFeature(let column, let reason):
            return "--date-columns names '\(column)', but \(reason): a date column is a feature; remove it from --date-columns, or make it a feature"
        case .odbcDriverNotFound(let connection, let detail, let drivers, let dataSources):
            let installed = drivers.isEmpty ? "none" : drivers.map { "{\($0)}" }.joined(separator: ", ")
            let names = dataSources.isEmpty ? "none" : dataSources.joined(separator: ", ")
            return "the ODBC driver manager could not use --odbc \"\(connection)\" (\(detail)): name an installed driver (DRIVER={PostgreSQL Unicode}; installed drivers, from odbcinst.ini: \(installed)) or a data source name defined in /etc/odbc.ini or ~/.odbc.ini (defined: \(names)); install a missing driver (Debian: odbc-postgresql, odbc-mariadb) — `odbcinst -j` shows which files are read"
        case .serverUnreachable(let connection, let detail):
            return "cannot reach the database server of --odbc \"\(connection)\" (\(detail)): check SERVER and PORT, that the server runs and listens on that address (PostgreSQL: listen_addresses; MariaDB: bind-address), and that no firewall is in the way"
        case .authenticationFailed(let connection, let detail):
            return "the database server refused the credentials of --odbc \"\(connection)\" (\(detail)): check the user name (UID=) and the password in --odbc-password-file or STRATA_ODBC_PASSWORD (the password is not shown), and that the server lets this user log in from this host (PostgreSQL: pg_hba.conf; MariaDB: 'user'@'host')"
        case .databaseNotFound(let connection, let detail):
            return "the database named in --odbc \"\(connection)\" does not exist on the server (\(detail)): check DATABASE="
        case .tableNotFoundOrDenied(let table, let available, let detail):
            let listed = available.prefix(30).joined(separator: ", ") + (available.count > 30 ? ", … (\(available.count) in all)" : "")
            return "table '\(table)' not found, or the database user may not read it (\(detail)); tables it may read: \(available.isEmpty ? "none" : listed). Check --table (or use --query), and that the user has SELECT on the table (MariaDB/MySQL: GRANT SELECT ON db.table TO 'user'@'host')"
        case .permissionDenied(let source, let detail):
            return "the database user may not read \(source) (\(detail)): the agent needs SELECT on the table and nothing else (PostgreSQL: GRANT SELECT ON table TO user; MariaDB: GRANT SELECT ON db.table TO 'user'@'host')"
        case .passwordFileUnreadable(let path, let detail):
            return "cannot read the database password from --odbc-password-file \(path) (\(detail)): the file must hold the password (one line; a final newline is ignored) and be readable by the agent, and by no one else"
        case .odbcFailed(let operation, let state, let message):
            return "ODBC error while \(operation): \(message) [SQLSTATE \(state)]"
        }
    }
}

