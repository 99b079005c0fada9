import Foundation
import GRDB
import GRDBSQLite

/// Writes float32 values into a blob column in place, through SQLite's incremental blob I/O: the row gets a
/// zero-filled blob of the right size, then the values go in 1 MiB at a time straight from the array. Binding a
/// `Data` instead costs two more copies of the whole model at every commit (the `Data` itself, and SQLite's
/// private copy of a transient binding): 800 MB for a 100M-parameter model.
enum FloatBlobWriter {
    static let chunkBytes = 1 << 20

    /// Inserts `record` with `values` (little-endian binary32) in its blob column `column`, whatever the record's
    /// own value there. The row is inserted with a zero-filled blob (SQLite builds the row in memory once, as for
    /// any insert), then the values are written into it in place.
    static func insert(_ record: some EncodableRecord & TableRecord, blob column: String, values: [Float], _ db: Database) throws {
        var fields = try record.databaseDictionary
        fields[column] = nil
        let names = fields.keys.sorted()
        let table = type(of: record).databaseTableName
        let columns: String = (names + [column]).map { (name: String) -> String in "\"" + name + "\"" }.joined(separator: ", ")
        let placeholders: String = (Array(repeating: "?", count: names.count) + ["zeroblob(?)"]).joined(separator: ", ")
        let sql = "INSERT INTO \"\(table)\" (\(columns)) VALUES (\(placeholders))"
        var arguments: [DatabaseValue] = names.map { fields[$0] ?? .null }
        arguments.append((values.count * 4).databaseValue)
        try db.execute(sql: sql, arguments: StatementArguments(arguments))
        try write(values, table: table, column: column, rowID: db.lastInsertedRowID, db)
    }

    /// Writes `values` into the zero-filled blob of their size in column `column` of row `rowID` of `table`.
    static func write(_ values: [Float], table: String, column: String, rowID: Int64, _ db: Database) throws {
        let bytes = values.count * 4
        guard bytes > 0 else { return }
        #if _endian(little)
        try write(byteCount: bytes, table: table, column: column, rowID: rowID, db) { write in try values.withUnsafeBytes { try write($0) } }
        #else
        try db.execute(sql: "UPDATE \"\(table)\" SET \"\(column)\" = ? WHERE rowid = ?", arguments: [FloatBlob.encode(values), rowID])
        #endif
    }

    /// Writes `byteCount` bytes into the zero-filled blob of that size in column `column` of row `rowID` of `table`:
    /// `pieces` calls its argument with each piece of the value in order (any sizes; 1 MiB at a time goes to
    /// SQLite). Throws if the pieces do not add up to `byteCount`.
    static func write(byteCount: Int, table: String, column: String, rowID: Int64, _ db: Database,
                      pieces: (_ write: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        var handle: OpaquePointer?
        let opened = sqlite3_blob_open(db.sqliteConnection, "main", table, column, rowID, 1, &handle)
        guard opened == SQLITE_OK, let handle else {
            sqlite3_blob_close(handle)
            throw DatabaseError(resultCode: ResultCode(rawValue: opened), message: "cannot open the blob of \(table).\(column) row \(rowID)")
        }
        defer { sqlite3_blob_close(handle) }
        var offset = 0
        try pieces { piece in
            guard piece.count <= byteCount - offset else {
                throw DatabaseError(resultCode: .SQLITE_MISUSE, message: "more than the \(byteCount) bytes of the blob of \(table).\(column) row \(rowID)")
            }
            var done = 0
            while done < piece.count {
                let count = min(chunkBytes, piece.count - done)
                let written = sqlite3_blob_write(handle, piece.baseAddress! + done, Int32(count), Int32(offset))
                guard written == SQLITE_OK else {
                    throw DatabaseError(resultCode: ResultCode(rawValue: written), message: "cannot write the blob of \(table).\(column) row \(rowID)")
                }
                done += count
                offset += count
            }
        }
        guard offset == byteCount else {
            throw DatabaseError(resultCode: .SQLITE_MISUSE, message: "\(offset) of the \(byteCount) bytes of the blob of \(table).\(column) row \(rowID) written")
        }
    }
}
