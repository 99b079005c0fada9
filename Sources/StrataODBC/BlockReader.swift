import CODBC
import Foundation
import StrataData

/// Fetches a result in blocks of rows (an ODBC block cursor, columns bound to arrays) and turns each value
/// into a `DatabaseCell`. Numbers are read as text (`SQL_C_CHAR`) and parsed here, text as UTF-16
/// (`SQL_C_WCHAR`), so that no value a server sends can trap the agent: an unsigned BIGINT beyond Int64 becomes
/// a real, a DECIMAL(38,10) a double, `NaN`/`Infinity` a value the assembler refuses by name.
final class BlockReader {
    struct Column {
        var cType: SQLSMALLINT
        /// Bytes per value, terminator included.
        var width: Int
        var columnClass: ODBCColumnClass
        var data: UnsafeMutableRawPointer
        var indicators: UnsafeMutablePointer<SQLLEN>
    }

    let statement: ODBCStatement
    let maxRows: Int
    let maxTextLength: Int
    /// Rows per fetch, as the driver took it.
    private(set) var rowsPerFetch = 1
    private var columns: [Column] = []
    private let fetched: UnsafeMutablePointer<SQLULEN>
    private let status: UnsafeMutablePointer<SQLUSMALLINT>

    /// Buffers of one fetch stay under this many bytes (fewer rows per fetch for a wide row).
    static let bufferBudget = 16 << 20

    init(statement: ODBCStatement, maxRows: Int, maxTextLength: Int) {
        self.statement = statement
        self.maxRows = max(1, maxRows)
        self.maxTextLength = max(64, maxTextLength)
        fetched = .allocate(capacity: 1)
        fetched.initialize(to: 0)
        status = .allocate(capacity: self.maxRows)
        status.initialize(repeating: 0, count: self.maxRows)
    }

    deinit {
        // Nothing may write into the buffers once they are freed.
        SQLFreeStmt(statement.handle, SQLUSMALLINT(SQL_CLOSE))
        SQLFreeStmt(statement.handle, SQLUSMALLINT(SQL_UNBIND))
        SQLSetStmtAttrW(statement.handle, SQLINTEGER(SQL_ATTR_ROWS_FETCHED_PTR), nil, 0)
        SQLSetStmtAttrW(statement.handle, SQLINTEGER(SQL_ATTR_ROW_STATUS_PTR), nil, 0)
        for column in columns {
            column.data.deallocate()
            column.indicators.deallocate()
        }
        fetched.deallocate()
        status.deallocate()
    }

    /// Binds the given result columns (1-based numbers) in this order: `cell(column: i, …)` reads the i-th.
    func bind(columns described: [(number: Int, column: ODBCResultColumn)]) throws {
        var layouts: [(cType: SQLSMALLINT, width: Int, columnClass: ODBCColumnClass)] = []
        for (_, column) in described {
            let size = Int(clamping: column.columnSize)
            switch column.columnClass {
            case .integer:
                layouts.append((SQLSMALLINT(SQL_C_CHAR), 48, .integer))
            case .real:
                // Digits, sign, point, exponent and terminator of the widest DECIMAL a server declares (1000 digits in PostgreSQL).
                layouts.append((SQLSMALLINT(SQL_C_CHAR), min(max(size + 8, 48), 1100), .real))
            case .character, .other:
                let units = size > 0 ? min(size, maxTextLength) : maxTextLength
                layouts.append((SQLSMALLINT(SQL_C_WCHAR), max(units + 1, 32) * MemoryLayout<SQLWCHAR>.size, column.columnClass))
            }
        }
        let rowBytes = layouts.reduce(0) { $0 + $1.width + MemoryLayout<SQLLEN>.size }
        let rows = min(maxRows, max(1, Self.bufferBudget / max(1, rowBytes)))

        _ = statement.setAttribute(SQL_ATTR_ROW_BIND_TYPE, UInt(SQL_BIND_BY_COLUMN))
        if !statement.setAttribute(SQL_ATTR_ROW_ARRAY_SIZE, UInt(rows)) { _ = statement.setAttribute(SQL_ATTR_ROW_ARRAY_SIZE, 1) }
        var taken: SQLULEN = 1
        var length: SQLINTEGER = 0
        if succeeded(SQLGetStmtAttrW(statement.handle, SQLINTEGER(SQL_ATTR_ROW_ARRAY_SIZE), &taken, SQLINTEGER(MemoryLayout<SQLULEN>.size), &length)) {
            rowsPerFetch = max(1, min(Int(clamping: taken), rows))   // a driver's answer: clamped, never trapped
        } else {
            rowsPerFetch = 1
        }
        if Int(clamping: taken) != rowsPerFetch { _ = statement.setAttribute(SQL_ATTR_ROW_ARRAY_SIZE, UInt(rowsPerFetch)) }
        try statement.check(SQLSetStmtAttrW(statement.handle, SQLINTEGER(SQL_ATTR_ROWS_FETCHED_PTR), UnsafeMutableRawPointer(fetched), 0),
                            "setting up the fetch")
        _ = SQLSetStmtAttrW(statement.handle, SQLINTEGER(SQL_ATTR_ROW_STATUS_PTR), UnsafeMutableRawPointer(status), 0)

        for ((number, _), layout) in zip(described, layouts) {
            let data = UnsafeMutableRawPointer.allocate(byteCount: layout.width * rowsPerFetch, alignment: 8)
            let indicators = UnsafeMutablePointer<SQLLEN>.allocate(capacity: rowsPerFetch)
            indicators.initialize(repeating: SQLLEN(SQL_NULL_DATA), count: rowsPerFetch)
            columns.append(Column(cType: layout.cType, width: layout.width, columnClass: layout.columnClass, data: data, indicators: indicators))
            try statement.check(SQLBindCol(statement.handle, SQLUSMALLINT(number), layout.cType, data, SQLLEN(layout.width), indicators),
                                "binding result column \(number)")
        }
    }

    /// Calls `body` with the index of every row of every block, in order, until it returns false.
    func forEachRow(_ body: (Int) throws -> Bool) throws {
        while true {
            fetched.pointee = 0
            let rc = SQLFetch(statement.handle)
            if rc == SQLRETURN(SQL_NO_DATA) { return }
            try statement.check(rc, "reading rows")
            let count = min(fetched.pointee == 0 ? 1 : Int(clamping: fetched.pointee), rowsPerFetch)
            for row in 0..<count {
                switch Int32(status[row]) {
                case SQL_ROW_NOROW: continue
                case SQL_ROW_ERROR:
                    throw ODBCCallError(operation: "reading a row", diagnostics: [ODBCDiagnostic(state: "HY000", native: 0, message: "the driver could not convert a value of this row")])
                default: if try !body(row) { return }
                }
            }
        }
    }

    /// The value of bound column `column` in row `row` of the current block.
    func cell(column c: Int, row: Int) -> DatabaseCell {
        let column = columns[c]
        let indicator = Int(column.indicators[row])
        if indicator == Int(SQL_NULL_DATA) { return .null }
        let base = column.data + row * column.width
        if column.cType == SQLSMALLINT(SQL_C_CHAR) {
            let capacity = column.width - 1
            let truncated = indicator == Int(SQL_NO_TOTAL) || indicator < 0 || indicator > capacity
            if !truncated, let cell = ColumnValues.numeralCell(UnsafeRawBufferPointer(start: base, count: indicator),
                                                              integer: column.columnClass == .integer) {
                return cell
            }
            let text = String(decoding: UnsafeRawBufferPointer(start: base, count: truncated ? capacity : indicator), as: UTF8.self)
            return Self.number(text, integer: column.columnClass == .integer, truncated: truncated)
        }
        let capacity = column.width / MemoryLayout<SQLWCHAR>.size - 1
        let truncated = indicator == Int(SQL_NO_TOTAL) || indicator < 0 || indicator / MemoryLayout<SQLWCHAR>.size > capacity
        if truncated { return .text("<text of more than \(capacity) characters>") }
        return .text(Wide.decode(base.assumingMemoryBound(to: SQLWCHAR.self), units: indicator / MemoryLayout<SQLWCHAR>.size))
    }

    /// A number a driver rendered as text.
    static func number(_ raw: String, integer: Bool, truncated: Bool) -> DatabaseCell {
        let text = ColumnValues.trimmed(raw)
        if truncated {
            // Only a fraction's last digits can be cut off a numeral that fits a double.
            if text.contains("."), !text.lowercased().contains("e"), let v = ColumnValues.numeral(text) { return .real(v) }
            return .text("<a number of more than \(raw.utf8.count) digits>")
        }
        if integer, let v = Int64(text) { return .integer(v) }
        if let v = ColumnValues.numeral(text) { return .real(v) }
        switch text.lowercased() {
        case "nan", "+nan", "-nan": return .real(.nan)
        case "infinity", "+infinity", "inf", "+inf": return .real(.infinity)
        case "-infinity", "-inf": return .real(-.infinity)
        default: return .text(text)
        }
    }
}
