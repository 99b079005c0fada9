import CODBC
import Foundation
import StrataData

/// A database password: added to the connection string only while connecting, never printed (its description
/// and reflection show `***`).
public struct ODBCPassword: Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    let value: String

    public init(_ value: String) { self.value = value }

    public var description: String { "***" }
    public var debugDescription: String { "***" }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }

    /// Reads the password from `file` (its first line; a final newline ignored), else from the environment
    /// variable `STRATA_ODBC_PASSWORD`; nil when neither is given.
    public static func resolve(file: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> ODBCPassword? {
        if let file {
            let data: Data
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: file))
            } catch {
                throw DataSourceError.passwordFileUnreadable(path: file, detail: (error as NSError).localizedFailureReason ?? "cannot be read")
            }
            var text = String(decoding: data, as: UTF8.self)
            while text.hasSuffix("\n") || text.hasSuffix("\r") { text.removeLast() }
            guard !text.isEmpty else { throw DataSourceError.passwordFileUnreadable(path: file, detail: "it is empty") }
            guard !text.contains("\n") else { throw DataSourceError.passwordFileUnreadable(path: file, detail: "it holds more than one line") }
            return ODBCPassword(text)
        }
        if let value = environment[environmentVariable], !value.isEmpty { return ODBCPassword(value) }
        return nil
    }

    public static let environmentVariable = "STRATA_ODBC_PASSWORD"
}

/// An agent's rows from a server database through the system's unixODBC driver manager: PostgreSQL, MariaDB
/// and MySQL, SQL Server, Db2, Oracle — any driver registered in odbcinst.ini. The same tables, queries,
/// features, labels, splits, NULL policy and errors as a SQLite database (`SamplePlan`, `SampleAssembler`).
///
/// Every value is read as text and parsed (integers, floating and decimal numbers, booleans, numerals in text
/// columns), so nothing a server holds can trap the agent. The session is made read-only where the driver
/// allows it (`SQL_ATTR_ACCESS_MODE`; PostgreSQL and MariaDB/MySQL also by a session setting).
public struct ODBCDataSource: DataSource {
    /// `DSN=sales;UID=strata_agent`, or `DRIVER={PostgreSQL Unicode};SERVER=db;PORT=5432;DATABASE=sales;UID=…`:
    /// without the password (`secretKeys(in:)` must find none).
    public var connectionString: String
    public var password: ODBCPassword?
    public var options: SampleOptions
    /// Seconds to wait for the server at connection (SQL_ATTR_LOGIN_TIMEOUT).
    public var loginTimeout: Int = 15
    /// Rows fetched per call (a block cursor), fewer when the row is wide.
    public var rowsPerFetch: Int = 512
    /// Longest text value read, in UTF-16 code units; a longer one reads as a marker that is not a number.
    public var maxTextLength: Int = 4095

    public init(connectionString: String, password: ODBCPassword?, options: SampleOptions) {
        self.connectionString = connectionString
        self.password = password
        self.options = options
    }

    public var description: String { "ODBC \(connectionString)" }

    /// The keys of `connectionString` that carry a secret (`PWD`, `PASSWORD`, any case): the agent refuses them
    /// on its command line, where every user of the machine can read them.
    public static func secretKeys(in connectionString: String) -> [String] {
        attributes(of: connectionString).map(\.key).filter { ["PWD", "PASSWORD"].contains($0.uppercased()) }
    }

    /// The `KEY=value` pairs of a connection string; a `{…}` value may hold `;` (and `}}` for `}`).
    static func attributes(of connectionString: String) -> [(key: String, value: String)] {
        var pairs: [(String, String)] = []
        var rest = Substring(connectionString)
        while !rest.isEmpty {
            guard let equals = rest.firstIndex(of: "=") else { break }
            let key = rest[..<equals].trimmingCharacters(in: .whitespaces).trimmingCharacters(in: CharacterSet(charactersIn: ";"))
            rest = rest[rest.index(after: equals)...]
            var value = ""
            if rest.first == "{" {
                var i = rest.index(after: rest.startIndex)
                while i < rest.endIndex {
                    if rest[i] == "}" {
                        let next = rest.index(after: i)
                        if next < rest.endIndex, rest[next] == "}" { value.append("}"); i = rest.index(after: next); continue }
                        i = next
                        break
                    }
                    value.append(rest[i])
                    i = rest.index(after: i)
                }
                rest = rest[i...]
                if let semicolon = rest.firstIndex(of: ";") { rest = rest[rest.index(after: semicolon)...] } else { rest = "" }
            } else if let semicolon = rest.firstIndex(of: ";") {
                value = String(rest[..<semicolon])
                rest = rest[rest.index(after: semicolon)...]
            } else {
                value = String(rest)
                rest = ""
            }
            if !key.isEmpty { pairs.append((key, value)) }
        }
        return pairs
    }

    /// The connection string with the password appended in braces (`}` doubled), for the driver only.
    func connectingString() -> String {
        guard let password else { return connectionString }
        let separator = connectionString.isEmpty || connectionString.hasSuffix(";") ? "" : ";"
        return connectionString + separator + "PWD={" + password.value.replacingOccurrences(of: "}", with: "}}") + "}"
    }

    public func load() throws -> LoadedSamples {
        let session = try connect()
        var samples = try read(session)
        samples.sourceNotes = session.notes
        return samples
    }

    // MARK: Connecting

    /// A connected, read-only session with what it says about itself.
    struct Session {
        var connection: ODBCConnection
        var quote: String
        var dbms: String
        var notes: [String]
    }

    func connect() throws -> Session {
        var connection = try open(connectingString())
        var notes: [String] = []
        // psqlodbc keeps a whole result in memory unless told to use a cursor: 3.7 GB and 77 s for a million
        // rows of 60 doubles (docs/PERFORMANCE.md, "Reading a table"). Reconnect asking for one, unless the
        // connection string says otherwise.
        if let extra = Self.streamingAttributes(driver: connection.info(SQL_DRIVER_NAME) ?? "", connectionString: connectionString) {
            let base = connectingString()
            connection = try open(base + (base.isEmpty || base.hasSuffix(";") ? "" : ";") + extra)
            notes.append("reading through a server-side cursor (\(extra) added: psqlodbc otherwise holds the whole result in memory; set UseDeclareFetch in --odbc to choose yourself)")
        }
        return try prepare(connection, notes: notes)
    }

    /// Connection attributes that make `driver` stream a large result instead of holding all of it, when the
    /// connection string does not set them itself; nil when none are needed or known.
    static func streamingAttributes(driver: String, connectionString: String) -> String? {
        guard driver.lowercased().hasPrefix("psqlodbc") else { return nil }
        let keys = Set(attributes(of: connectionString).map { $0.key.lowercased() })
        guard !keys.contains("usedeclarefetch"), !keys.contains("b6") else { return nil }   // B6: its short name
        return "UseDeclareFetch=1;Fetch=10000"
    }

    /// A connected handle, its errors classified.
    private func open(_ connecting: String) throws -> ODBCConnection {
        let connection: ODBCConnection
        do {
            connection = try ODBCConnection(secret: password?.value)
        } catch let error as ODBCCallError {
            throw DataSourceError.odbcFailed(operation: error.operation, state: error.state, message: error.message)
        }
        connection.setAttribute(SQL_ATTR_LOGIN_TIMEOUT, UInt(max(1, loginTimeout)))
        connection.setAttribute(SQL_ATTR_ACCESS_MODE, SQL_MODE_READ_ONLY)
        do {
            try connection.connect(connecting)
        } catch let error as ODBCCallError {
            throw classifyConnectionError(error, connection: connection)
        }
        return connection
    }

    /// Makes a connected session read-only where it can, and describes it.
    private func prepare(_ connection: ODBCConnection, notes earlier: [String]) throws -> Session {
        // Some drivers take the access mode only once connected.
        var readOnly: [String] = []
        if connection.attribute(SQL_ATTR_ACCESS_MODE) == SQL_MODE_READ_ONLY || connection.setAttribute(SQL_ATTR_ACCESS_MODE, SQL_MODE_READ_ONLY) {
            readOnly.append("SQL_ATTR_ACCESS_MODE=SQL_MODE_READ_ONLY")
        }
        let dbms = connection.info(SQL_DBMS_NAME) ?? "unknown"
        var notes = ["database: \(dbms) \(connection.info(SQL_DBMS_VER) ?? ""), ODBC driver \(connection.info(SQL_DRIVER_NAME) ?? "?") \(connection.info(SQL_DRIVER_VER) ?? "")"] + earlier
        if let setting = Self.readOnlySessionStatement(dbms: dbms) {
            do {
                try connection.execute(setting)
                readOnly.append(setting)
            } catch let error as ODBCCallError {
                notes.append("could not make the session read-only with \(setting): \(error.message)")
            }
        }
        notes.append(readOnly.isEmpty ? "session: the driver offers no read-only mode; the database user's privileges are the only guard (grant SELECT only)"
                                      : "session read-only: " + readOnly.joined(separator: "; "))
        var quote = connection.info(SQL_IDENTIFIER_QUOTE_CHAR) ?? "\""
        if quote.trimmingCharacters(in: .whitespaces).isEmpty { quote = "" }
        return Session(connection: connection, quote: quote, dbms: dbms, notes: notes)
    }

    /// The statement that makes every later transaction of the session read-only, for the servers that have one.
    static func readOnlySessionStatement(dbms: String) -> String? {
        let name = dbms.lowercased()
        if name.contains("postgres") { return "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY" }
        if name.contains("mariadb") || name.contains("mysql") { return "SET SESSION TRANSACTION READ ONLY" }
        return nil
    }

    func classifyConnectionError(_ error: ODBCCallError, connection: ODBCConnection) -> DataSourceError {
        let state = error.state
        let message = error.message
        let lower = message.lowercased()
        let natives = Set(error.diagnostics.map(\.native))
        if error.diagnostics.contains(where: { $0.state.hasPrefix("IM") }) || lower.contains("can't open lib")
            || lower.contains("data source name not found") {
            let (drivers, names) = connection.driversAndDataSources()
            return .odbcDriverNotFound(connection: connectionString, detail: message, drivers: drivers, dataSources: names)
        }
        if state == "28000" || state == "28P01" || natives.contains(1045) || lower.contains("password authentication failed")
            || lower.contains("access denied for user") || lower.contains("authentication failed") || lower.contains("login failed")
            || lower.contains("no password supplied") {
            return .authenticationFailed(connection: connectionString, detail: message)
        }
        if state == "3D000" || natives.contains(1049) || (lower.contains("database") && lower.contains("does not exist")) || lower.contains("unknown database") {
            return .databaseNotFound(connection: connectionString, detail: message)
        }
        if state.hasPrefix("08") || state == "HYT00" || state == "HYT01" || natives.contains(2002) || natives.contains(2003)
            || lower.contains("could not connect") || lower.contains("connection refused") || lower.contains("can't connect") {
            return .serverUnreachable(connection: connectionString, detail: message)
        }
        return .odbcFailed(operation: "connecting with --odbc \"\(connectionString)\"", state: state, message: message)
    }

    // MARK: Reading

    /// `"visits"`: one identifier quoted with the driver's quote character (embedded quotes doubled).
    static func quoted(_ name: String, quote: String) -> String {
        guard !quote.isEmpty else { return name }
        return quote + name.replacingOccurrences(of: quote, with: quote + quote) + quote
    }

    static func qualified(schema: String?, table: String, quote: String) -> String {
        (schema.map { quoted($0, quote: quote) + "." } ?? "") + quoted(table, quote: quote)
    }

    static func isMissingTable(_ error: ODBCCallError) -> Bool {
        error.diagnostics.contains { $0.state == "42P01" || $0.state == "42S02" || $0.native == 1146 }
    }

    static func isPermissionDenied(_ error: ODBCCallError) -> Bool {
        error.diagnostics.contains {
            $0.state == "42501" || $0.native == 1142 || $0.native == 1143
                || $0.message.lowercased().contains("permission denied") || $0.message.lowercased().contains("command denied")
        }
    }

    private func read(_ session: Session) throws -> LoadedSamples {
        let connection = session.connection
        switch options.selection {
        case .table(let given, _):
            var (schema, table) = Self.splitName(given)
            let sourceName = "table '\(given)'"
            // The table's columns, from a query that returns none. A name the server does not know (PostgreSQL
            // folds unquoted names to lower case; MariaDB on Linux compares them exactly) is looked up once in
            // the tables the user may read, whatever the case.
            var probe = try connection.statement()
            var retried = false
            while true {
                do {
                    try probe.execute("SELECT * FROM \(Self.qualified(schema: schema, table: table, quote: session.quote)) WHERE 1 = 0",
                                      operation: "reading \(sourceName)")
                    break
                } catch let error as ODBCCallError {
                    let denied = Self.isPermissionDenied(error)
                    guard denied || Self.isMissingTable(error) else {
                        throw DataSourceError.queryFailed(sql: "SELECT * FROM \(given) WHERE 1 = 0", message: error.message)
                    }
                    let available = (try? connection.statement().tables(schema: schema)) ?? []
                    let sameSchema = { (entry: (schema: String?, name: String)) in schema == nil || entry.schema?.lowercased() == schema?.lowercased() }
                    if denied, available.contains(where: { $0.name == table && sameSchema($0) }) {
                        throw DataSourceError.permissionDenied(source: sourceName, detail: error.message)
                    }
                    let matches = available.filter { $0.name.lowercased() == table.lowercased() && $0.name != table && sameSchema($0) }
                    guard !retried, matches.count == 1 else {
                        // MariaDB and MySQL answer "denied" for a table that does not exist too.
                        if denied { throw DataSourceError.tableNotFoundOrDenied(table: given, available: Self.displayNames(available), detail: error.message) }
                        throw DataSourceError.tableNotFound(table: given, available: Self.displayNames(available))
                    }
                    table = matches[0].name
                    if schema != nil { schema = matches[0].schema }
                    retried = true
                    probe = try connection.statement()
                }
            }
            let resultColumns = try odbc { try probe.describeColumns() }
            let key = (try? connection.statement())?.primaryKey(schema: schema, table: table) ?? []
            let columns = resultColumns.map { column in
                SourceColumn(name: column.name, declaredType: column.declaredType, typing: Self.typing(column), isPrimaryKey: key.contains(column.name))
            }
            let plan = try SamplePlan(options: options, columns: columns, sourceName: sourceName)
            // A single integer primary key orders the rows and is their key (in errors, in the split without a
            // split column); otherwise rows are numbered in the server's order.
            let rowKey = key.count == 1 ? resultColumns.first { $0.name == key[0] && $0.columnClass == .integer }?.name : nil
            let selected = ((rowKey.map { [$0] } ?? []) + plan.columns).map { Self.quoted($0, quote: session.quote) }
            var sql = "SELECT \(selected.joined(separator: ", ")) FROM \(Self.qualified(schema: schema, table: table, quote: session.quote))"
            if let rowKey { sql += " ORDER BY \(Self.quoted(rowKey, quote: session.quote))" }
            let statement = try connection.statement()
            limitRows(statement)
            let reader = BlockReader(statement: statement, maxRows: rowsPerFetch, maxTextLength: maxTextLength)
            do {
                try statement.execute(sql, operation: "reading \(sourceName)")
            } catch let error as ODBCCallError {
                if Self.isPermissionDenied(error) { throw DataSourceError.permissionDenied(source: sourceName, detail: error.message) }
                throw DataSourceError.queryFailed(sql: sql, message: error.message)
            }
            let described = try odbc { try statement.describeColumns() }
            return try assemble(plan: plan, reader: reader, described: described, positions: Array(described.indices), hasRowKey: rowKey != nil)
        case .query(let query, _):
            let statement = try connection.statement()
            limitRows(statement)
            let reader = BlockReader(statement: statement, maxRows: rowsPerFetch, maxTextLength: maxTextLength)
            do {
                try statement.execute(query, operation: "running the query")
            } catch let error as ODBCCallError {
                if Self.isPermissionDenied(error) { throw DataSourceError.permissionDenied(source: "the query's tables", detail: error.message) }
                throw DataSourceError.queryFailed(sql: query, message: error.message)
            }
            let described = try odbc { try statement.describeColumns() }
            let columns = described.map { SourceColumn(name: $0.name, declaredType: $0.declaredType, typing: Self.typing($0)) }
            let plan = try SamplePlan(options: options, columns: columns, sourceName: "the query")
            let positions = plan.columns.map { name in described.firstIndex { $0.name == name }! }
            return try assemble(plan: plan, reader: reader, described: described, positions: positions, hasRowKey: false)
        }
    }

    /// Fetches every row, binding the result columns at `positions` (after the row key, when there is one).
    private func assemble(plan: SamplePlan, reader: BlockReader, described: [ODBCResultColumn], positions: [Int], hasRowKey: Bool) throws -> LoadedSamples {
        var assembler = SampleAssembler(plan: plan, options: options)
        try odbc { try reader.bind(columns: positions.map { ($0 + 1, described[$0]) }) }
        let first = hasRowKey ? 1 : 0
        try odbc {
            try reader.forEachRow { row in
                if assembler.isFull { assembler.stop(); return false }
                let key: Int64? = hasRowKey ? reader.cell(column: 0, row: row).integerValue : nil
                try assembler.add(rowID: key) { i in reader.cell(column: first + i, row: row) }
                return true
            }
        }
        return try assembler.finish()
    }

    /// With `--max-rows N`, asks the driver for N + 1 rows at most (SQL_ATTR_MAX_ROWS; one more, to know
    /// that the source has more): the server may then stop early. The reading loop stops at N either way.
    private func limitRows(_ statement: ODBCStatement) {
        guard let limit = options.maxRows, limit < Int.max else { return }
        _ = statement.setAttribute(SQL_ATTR_MAX_ROWS, UInt(limit + 1))
    }

    /// Maps the ODBC layer's errors (outside connecting and the statements that name a table) to
    /// `DataSourceError.odbcFailed`.
    private func odbc<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as ODBCCallError {
            throw DataSourceError.odbcFailed(operation: error.operation, state: error.state, message: error.message)
        }
    }

    static func typing(_ column: ODBCResultColumn) -> SourceColumn.Typing {
        switch column.columnClass {
        case .integer, .real: return .numeric
        case .character: return column.typeName.lowercased().contains("bool") ? .numeric : .textual
        case .other: return .unusable
        }
    }

    /// `sales.visits` → (sales, visits); `visits` → (nil, visits).
    static func splitName(_ name: String) -> (schema: String?, table: String) {
        guard let dot = name.lastIndex(of: "."), dot != name.startIndex, name.index(after: dot) != name.endIndex else { return (nil, name) }
        return (String(name[..<dot]), String(name[name.index(after: dot)...]))
    }

    /// Table names for an error message: qualified by their schema unless it is a default one.
    static func displayNames(_ tables: [(schema: String?, name: String)]) -> [String] {
        tables.map { table in
            guard let schema = table.schema, !schema.isEmpty, !["public", "dbo"].contains(schema.lowercased()) else { return table.name }
            return "\(schema).\(table.name)"
        }.sorted()
    }
}

extension DatabaseCell {
    /// The integer of an integer cell (a row key), nil otherwise.
    var integerValue: Int64? {
        if case .integer(let v) = self { return v }
        return nil
    }
}
