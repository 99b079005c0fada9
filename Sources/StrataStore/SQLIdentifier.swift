import Foundation

extension String {
    /// The name as a SQLite identifier: in double quotes, each quote inside doubled, so that any table or column
    /// name (spaces, quotes, keywords) is read as itself. GRDB's `quotedDatabaseIdentifier` adds the quotes but
    /// does not double the ones inside.
    var sqlIdentifier: String {
        "\"" + replacingOccurrences(of: "\"", with: "\"\"") + "\""
    }
}
