import GRDB

public enum SQLiteLibrary {
    /// The SQLite this process runs with (`3.40.1`), asked of the library itself.
    public static var version: String {
        (try? DatabaseQueue().read { try String.fetchOne($0, sql: "SELECT sqlite_version()") }) ?? "unknown"
    }
}
