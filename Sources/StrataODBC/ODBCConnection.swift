import CODBC
import Foundation

/// One diagnostic record of an ODBC handle: the SQLSTATE, the server's native error code and the message.
struct ODBCDiagnostic: Sendable, Hashable {
    var state: String
    var native: Int32
    var message: String
}

/// A failed ODBC call: what was being done and the handle's diagnostics (already scrubbed of the password).
struct ODBCCallError: Error, CustomStringConvertible {
    var operation: String
    var diagnostics: [ODBCDiagnostic]

    var state: String { diagnostics.first?.state ?? "HY000" }
    /// The driver's messages, one after the other; the driver's bracketed prefixes (`[unixODBC][Driver]…`) kept.
    var message: String {
        diagnostics.isEmpty ? "no diagnostic from the driver" : diagnostics.map { "\($0.message) (\($0.state))" }.joined(separator: "; ")
    }
    var description: String { "\(operation): \(message)" }
}

/// The SQL types a column may have (ODBC 3 codes), grouped by how the agent reads them.
enum ODBCColumnClass: Sendable, Hashable {
    /// TINYINT, SMALLINT, INTEGER, BIGINT, BIT: read as text and parsed (an integer beyond Int64, an unsigned
    /// BIGINT, becomes a real).
    case integer
    /// REAL, FLOAT, DOUBLE, NUMERIC, DECIMAL: read as text and parsed as a double (a DECIMAL(38,10) never
    /// overflows the agent; a value beyond float32's range is refused, naming it).
    case real
    /// CHAR, VARCHAR, LONGVARCHAR and their wide forms: text, read as numbers when they are numerals.
    case character
    /// Dates, times, intervals, binary data, GUIDs and anything unknown.
    case other

    init(sqlType: Int16) {
        switch Int32(sqlType) {
        case SQL_TINYINT, SQL_SMALLINT, SQL_INTEGER, SQL_BIGINT, SQL_BIT: self = .integer
        case SQL_REAL, SQL_FLOAT, SQL_DOUBLE, SQL_NUMERIC, SQL_DECIMAL: self = .real
        case SQL_CHAR, SQL_VARCHAR, SQL_LONGVARCHAR, SQL_WCHAR, SQL_WVARCHAR, SQL_WLONGVARCHAR: self = .character
        default: self = .other
        }
    }
}

/// A result column as the driver describes it.
struct ODBCResultColumn: Sendable, Hashable {
    var name: String
    var sqlType: Int16
    /// The database's own name of the type (`int4`, `numeric`, `bool`, `DECIMAL`), or the ODBC name when the
    /// driver gives none.
    var typeName: String
    var columnSize: UInt
    var decimalDigits: Int16
    var columnClass: ODBCColumnClass { ODBCColumnClass(sqlType: sqlType) }

    /// `numeric(10,2)`, `int4`, `varchar(5)`.
    var declaredType: String {
        let decimal = Int32(sqlType) == SQL_NUMERIC || Int32(sqlType) == SQL_DECIMAL
        return decimal && columnSize > 0 && !typeName.contains("(") ? "\(typeName)(\(columnSize),\(decimalDigits))" : typeName
    }
}

/// UTF-16 strings for the wide ODBC calls (unixODBC's SQLWCHAR is 16 bits).
enum Wide {
    static func make(_ s: String) -> [SQLWCHAR] { Array(s.utf16) + [0] }

    /// Decodes `units` UTF-16 code units; invalid sequences become U+FFFD, never a trap.
    static func decode(_ pointer: UnsafePointer<SQLWCHAR>, units: Int) -> String {
        String(decoding: UnsafeBufferPointer(start: pointer, count: max(0, units)), as: UTF16.self)
    }

    static func decode(_ buffer: [SQLWCHAR], units: Int) -> String {
        let count = min(max(0, units), buffer.count)
        return String(decoding: buffer[..<count], as: UTF16.self)
    }
}

@inline(__always) func succeeded(_ rc: SQLRETURN) -> Bool { rc == SQLRETURN(SQL_SUCCESS) || rc == SQLRETURN(SQL_SUCCESS_WITH_INFO) }

/// The handles of one ODBC session: an environment, a connection, statements. Used from one thread, freed on
/// deinit (disconnecting first). Every message read from the driver is scrubbed of `secret`.
final class ODBCConnection {
    private var environment: SQLHANDLE?
    private var connection: SQLHANDLE?
    private var connected = false
    private let secret: String?

    init(secret: String?) throws {
        self.secret = secret.flatMap { $0.isEmpty ? nil : $0 }
        var env: SQLHANDLE?
        guard succeeded(SQLAllocHandle(SQLSMALLINT(SQL_HANDLE_ENV), nil, &env)), let env else {
            throw ODBCCallError(operation: "allocating the ODBC environment (is unixODBC installed?)", diagnostics: [])
        }
        environment = env
        try check(SQLSetEnvAttr(env, SQLINTEGER(SQL_ATTR_ODBC_VERSION), SQLPOINTER(bitPattern: UInt(SQL_OV_ODBC3)), 0),
                  SQLSMALLINT(SQL_HANDLE_ENV), env, "setting ODBC version 3")
        var dbc: SQLHANDLE?
        try check(SQLAllocHandle(SQLSMALLINT(SQL_HANDLE_DBC), env, &dbc), SQLSMALLINT(SQL_HANDLE_ENV), env, "allocating an ODBC connection")
        connection = dbc
    }

    deinit {
        if let connection {
            if connected { SQLDisconnect(connection) }
            SQLFreeHandle(SQLSMALLINT(SQL_HANDLE_DBC), connection)
        }
        if let environment { SQLFreeHandle(SQLSMALLINT(SQL_HANDLE_ENV), environment) }
    }

    // MARK: Connecting

    /// Sets an integer connection attribute; false (and no error) when the driver does not support it.
    @discardableResult
    func setAttribute(_ attribute: Int32, _ value: UInt) -> Bool {
        succeeded(SQLSetConnectAttrW(connection, SQLINTEGER(attribute), SQLPOINTER(bitPattern: value), SQLINTEGER(SQL_IS_UINTEGER)))
    }

    /// An integer connection attribute as the driver reports it, nil when it cannot.
    func attribute(_ attribute: Int32) -> UInt? {
        var value: SQLULEN = 0
        var length: SQLINTEGER = 0
        guard succeeded(SQLGetConnectAttrW(connection, SQLINTEGER(attribute), &value, SQLINTEGER(MemoryLayout<SQLULEN>.size), &length)) else { return nil }
        return UInt(value)
    }

    func connect(_ connectionString: String) throws {
        var input = Wide.make(connectionString)
        var output = [SQLWCHAR](repeating: 0, count: 1024)
        var outputLength: SQLSMALLINT = 0
        let rc = SQLDriverConnectW(connection, nil, &input, SQLSMALLINT(SQL_NTS), &output, SQLSMALLINT(output.count), &outputLength,
                                   SQLUSMALLINT(SQL_DRIVER_NOPROMPT))
        // The completed connection string may hold the password: it is dropped at once.
        for i in output.indices { output[i] = 0 }
        try check(rc, SQLSMALLINT(SQL_HANDLE_DBC), connection, "connecting")
        connected = true
    }

    /// A text from SQLGetInfo (SQL_DBMS_NAME, SQL_DBMS_VER, SQL_DRIVER_NAME, SQL_IDENTIFIER_QUOTE_CHAR, …).
    func info(_ type: Int32) -> String? {
        var buffer = [SQLWCHAR](repeating: 0, count: 256)
        var length: SQLSMALLINT = 0
        let rc = buffer.withUnsafeMutableBytes { bytes in
            SQLGetInfoW(connection, SQLUSMALLINT(type), bytes.baseAddress, SQLSMALLINT(bytes.count), &length)
        }
        guard succeeded(rc) else { return nil }
        return Wide.decode(buffer, units: Int(length) / MemoryLayout<SQLWCHAR>.size)
    }

    /// The installed drivers (odbcinst.ini) and the defined data source names (odbc.ini): for an error message.
    func driversAndDataSources() -> (drivers: [String], dataSources: [String]) {
        var drivers: [String] = [], names: [String] = []
        var description = [SQLWCHAR](repeating: 0, count: 256), attributes = [SQLWCHAR](repeating: 0, count: 1024)
        var descriptionLength: SQLSMALLINT = 0, attributesLength: SQLSMALLINT = 0
        var direction = SQLUSMALLINT(SQL_FETCH_FIRST)
        while succeeded(SQLDriversW(environment, direction, &description, SQLSMALLINT(description.count), &descriptionLength,
                                    &attributes, SQLSMALLINT(attributes.count), &attributesLength)), drivers.count < 100 {
            drivers.append(Wide.decode(description, units: Int(descriptionLength)))
            direction = SQLUSMALLINT(SQL_FETCH_NEXT)
        }
        direction = SQLUSMALLINT(SQL_FETCH_FIRST)
        var name = [SQLWCHAR](repeating: 0, count: 256)
        var nameLength: SQLSMALLINT = 0
        while succeeded(SQLDataSourcesW(environment, direction, &name, SQLSMALLINT(name.count), &nameLength,
                                        &description, SQLSMALLINT(description.count), &descriptionLength)), names.count < 100 {
            names.append(Wide.decode(name, units: Int(nameLength)))
            direction = SQLUSMALLINT(SQL_FETCH_NEXT)
        }
        return (drivers, names)
    }

    // MARK: Statements

    func statement() throws -> ODBCStatement {
        var handle: SQLHANDLE?
        try check(SQLAllocHandle(SQLSMALLINT(SQL_HANDLE_STMT), connection, &handle), SQLSMALLINT(SQL_HANDLE_DBC), connection, "allocating a statement")
        return ODBCStatement(handle: handle!, owner: self)
    }

    /// Runs a statement that returns no rows the agent reads (a session setting).
    func execute(_ sql: String) throws {
        let statement = try statement()
        try statement.execute(sql, operation: "running \(sql)")
    }

    // MARK: Diagnostics

    func check(_ rc: SQLRETURN, _ handleType: SQLSMALLINT, _ handle: SQLHANDLE?, _ operation: @autoclosure () -> String) throws {
        guard !succeeded(rc) else { return }
        if rc == SQLRETURN(SQL_INVALID_HANDLE) { throw ODBCCallError(operation: operation(), diagnostics: [ODBCDiagnostic(state: "HY000", native: 0, message: "invalid handle")]) }
        throw ODBCCallError(operation: operation(), diagnostics: diagnostics(handleType, handle))
    }

    func diagnostics(_ handleType: SQLSMALLINT, _ handle: SQLHANDLE?) -> [ODBCDiagnostic] {
        var records: [ODBCDiagnostic] = []
        var state = [SQLWCHAR](repeating: 0, count: 6)
        var message = [SQLWCHAR](repeating: 0, count: 2048)
        var native: SQLINTEGER = 0
        var length: SQLSMALLINT = 0
        var record: SQLSMALLINT = 1
        while record <= 8, succeeded(SQLGetDiagRecW(handleType, handle, record, &state, &native, &message, SQLSMALLINT(message.count), &length)) {
            // One line: servers end their messages with newlines (PostgreSQL's "FATAL:  …\n").
            let text = Wide.decode(message, units: min(Int(length), message.count - 1))
                .split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.joined(separator: " ")
            records.append(ODBCDiagnostic(state: Wide.decode(state, units: 5), native: native, message: scrub(text)))
            record += 1
        }
        return records
    }

    /// The message with every occurrence of the password replaced.
    func scrub(_ text: String) -> String {
        guard let secret else { return text }
        return text.replacingOccurrences(of: secret, with: "***")
    }
}

/// One statement handle; freed on deinit.
final class ODBCStatement {
    let handle: SQLHANDLE
    private let owner: ODBCConnection

    fileprivate init(handle: SQLHANDLE, owner: ODBCConnection) {
        self.handle = handle
        self.owner = owner
    }

    deinit {
        SQLFreeHandle(SQLSMALLINT(SQL_HANDLE_STMT), handle)
    }

    func check(_ rc: SQLRETURN, _ operation: @autoclosure () -> String) throws {
        try owner.check(rc, SQLSMALLINT(SQL_HANDLE_STMT), handle, operation())
    }

    func execute(_ sql: String, operation: @autoclosure () -> String) throws {
        var text = Wide.make(sql)
        let rc = SQLExecDirectW(handle, &text, SQLINTEGER(SQL_NTS))
        // A statement that returns no rows may answer SQL_NO_DATA.
        if rc == SQLRETURN(SQL_NO_DATA) { return }
        try check(rc, operation())
    }

    /// Sets an integer statement attribute; false when the driver does not support it.
    @discardableResult
    func setAttribute(_ attribute: Int32, _ value: UInt) -> Bool {
        succeeded(SQLSetStmtAttrW(handle, SQLINTEGER(attribute), SQLPOINTER(bitPattern: value), SQLINTEGER(SQL_IS_UINTEGER)))
    }

    /// The result's columns.
    func describeColumns() throws -> [ODBCResultColumn] {
        var count: SQLSMALLINT = 0
        try check(SQLNumResultCols(handle, &count), "counting the result's columns")
        var columns: [ODBCResultColumn] = []
        var name = [SQLWCHAR](repeating: 0, count: 512)
        for i in 0..<Int(max(0, count)) {
            var nameLength: SQLSMALLINT = 0, type: SQLSMALLINT = 0, digits: SQLSMALLINT = 0, nullable: SQLSMALLINT = 0
            var size: SQLULEN = 0
            try check(SQLDescribeColW(handle, SQLUSMALLINT(i + 1), &name, SQLSMALLINT(name.count), &nameLength, &type, &size, &digits, &nullable),
                      "describing result column \(i + 1)")
            var typeName = [SQLWCHAR](repeating: 0, count: 128)
            var typeNameBytes: SQLSMALLINT = 0
            var numeric: SQLLEN = 0
            let rc = typeName.withUnsafeMutableBytes { bytes in
                SQLColAttributeW(handle, SQLUSMALLINT(i + 1), SQLUSMALLINT(SQL_DESC_TYPE_NAME), bytes.baseAddress, SQLSMALLINT(bytes.count),
                                 &typeNameBytes, &numeric)
            }
            var declared = succeeded(rc) ? Wide.decode(typeName, units: Int(typeNameBytes) / MemoryLayout<SQLWCHAR>.size) : ""
            if declared.isEmpty { declared = Self.odbcTypeName(type) }
            columns.append(ODBCResultColumn(name: Wide.decode(name, units: min(Int(nameLength), name.count - 1)), sqlType: type,
                                            typeName: declared, columnSize: UInt(size), decimalDigits: digits))
        }
        return columns
    }

    static func odbcTypeName(_ type: SQLSMALLINT) -> String {
        switch Int32(type) {
        case SQL_TINYINT: "TINYINT"
        case SQL_SMALLINT: "SMALLINT"
        case SQL_INTEGER: "INTEGER"
        case SQL_BIGINT: "BIGINT"
        case SQL_BIT: "BIT"
        case SQL_REAL: "REAL"
        case SQL_FLOAT: "FLOAT"
        case SQL_DOUBLE: "DOUBLE"
        case SQL_NUMERIC: "NUMERIC"
        case SQL_DECIMAL: "DECIMAL"
        case SQL_CHAR, SQL_WCHAR: "CHAR"
        case SQL_VARCHAR, SQL_WVARCHAR: "VARCHAR"
        case SQL_LONGVARCHAR, SQL_WLONGVARCHAR: "LONGVARCHAR"
        case SQL_TYPE_DATE, SQL_DATE: "DATE"
        case SQL_TYPE_TIME, SQL_TIME: "TIME"
        case SQL_TYPE_TIMESTAMP, SQL_TIMESTAMP: "TIMESTAMP"
        case SQL_BINARY, SQL_VARBINARY, SQL_LONGVARBINARY: "BINARY"
        case SQL_GUID: "GUID"
        default: "SQL type \(type)"
        }
    }

    /// Reads a catalog result (SQLTables, SQLPrimaryKeys) row by row as text, the given 1-based columns.
    func textRows(columns: [Int], limit: Int) throws -> [[String?]] {
        var rows: [[String?]] = []
        var buffer = [SQLWCHAR](repeating: 0, count: 1024)
        while rows.count < limit {
            let rc = SQLFetch(handle)
            if rc == SQLRETURN(SQL_NO_DATA) { break }
            try check(rc, "reading the catalog")
            var row: [String?] = []
            for column in columns {
                var indicator: SQLLEN = 0
                let got = buffer.withUnsafeMutableBytes { bytes in
                    SQLGetData(handle, SQLUSMALLINT(column), SQLSMALLINT(SQL_C_WCHAR), bytes.baseAddress, SQLLEN(bytes.count), &indicator)
                }
                guard succeeded(got), indicator != SQLLEN(SQL_NULL_DATA) else { row.append(nil); continue }
                let units = indicator == SQLLEN(SQL_NO_TOTAL) ? buffer.count - 1 : min(Int(indicator) / MemoryLayout<SQLWCHAR>.size, buffer.count - 1)
                row.append(Wide.decode(buffer, units: units))
            }
            rows.append(row)
        }
        return rows
    }

    /// SQLTables: (schema, name) of every table and view, at most `limit`.
    func tables(schema: String?, limit: Int = 10_000) throws -> [(schema: String?, name: String)] {
        var types = Wide.make("TABLE,VIEW")
        var percent = Wide.make("%")
        let rc: SQLRETURN
        if var schemaText = schema.map(Wide.make) {
            rc = SQLTablesW(handle, nil, 0, &schemaText, SQLSMALLINT(SQL_NTS), &percent, SQLSMALLINT(SQL_NTS), &types, SQLSMALLINT(SQL_NTS))
        } else {
            rc = SQLTablesW(handle, nil, 0, nil, 0, &percent, SQLSMALLINT(SQL_NTS), &types, SQLSMALLINT(SQL_NTS))
        }
        try check(rc, "listing the tables")
        return try textRows(columns: [2, 3], limit: limit).compactMap { row in row[1].map { (row[0], $0) } }
    }

    /// SQLPrimaryKeys: the primary key's columns in key order; empty when there is none or the driver cannot say.
    func primaryKey(schema: String?, table: String) -> [String] {
        var tableText = Wide.make(table)
        let rc: SQLRETURN
        if var schemaText = schema.map(Wide.make) {
            rc = SQLPrimaryKeysW(handle, nil, 0, &schemaText, SQLSMALLINT(SQL_NTS), &tableText, SQLSMALLINT(SQL_NTS))
        } else {
            rc = SQLPrimaryKeysW(handle, nil, 0, nil, 0, &tableText, SQLSMALLINT(SQL_NTS))
        }
        guard succeeded(rc), let rows = try? textRows(columns: [4, 5], limit: 64) else { return [] }
        return rows.compactMap { row -> (Int, String)? in
            guard let name = row[0] else { return nil }
            return (Int(row[1] ?? "") ?? 0, name)
        }.sorted { $0.0 < $1.0 }.map(\.1)
    }
}
