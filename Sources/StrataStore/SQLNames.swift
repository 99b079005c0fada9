import Foundation
import GRDB

extension String {
    /// The name as a SQLite identifier: in double quotes, each quote inside doubled, so that any table or column
    /// name (spaces, quotes, keywords) is read as itself. GRDB's `quotedDatabaseIdentifier` adds the quotes but
    /// does not double the ones inside.
    var sqlIdentifier: String {
        "\"" + replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}

/// A column of a table, as `PRAGMA table_xinfo` lists it.
struct TableColumn: Hashable {
    var name: String
    var declaredType: String
    /// 0, or the column's place in the primary key (from 1).
    var primaryKeyIndex: Int
}

extension Database {
    /// The columns of `table` in declaration order, without the hidden columns of a virtual table (what GRDB's
    /// `columns(in:)` returns). The name is bound as an argument, not spliced into the SQL: GRDB's `columns(in:)`
    /// fails on a name that holds a double quote.
    func tableColumns(_ table: String) throws -> [TableColumn] {
        try Row.fetchAll(self, sql: "SELECT name, type, pk FROM pragma_table_xinfo(?) WHERE hidden != 1 ORDER BY cid", arguments: [table]).map { row in
            TableColumn(name: row["name"] ?? "", declaredType: row["type"] ?? "", primaryKeyIndex: row["pk"] ?? 0)
        }
    }
}
