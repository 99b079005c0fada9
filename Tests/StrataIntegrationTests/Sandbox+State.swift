import GRDB

extension Sandbox {
    /// A connection for a test to read a program's SQLite state while the program runs (or after it was killed).
    /// Not `readonly`: a read-only connection cannot rebuild a WAL index and fails with SQLITE_READONLY when it
    /// opens at the wrong moment (a CI run saw it on the first read after the coordinator started).
    /// `query_only` keeps the test from changing anything; the busy timeout rides out a checkpoint.
    func observe(_ name: String) throws -> DatabaseQueue {
        var configuration = Configuration()
        configuration.busyMode = .timeout(10)
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA query_only = ON") }
        return try DatabaseQueue(path: file(name), configuration: configuration)
    }
}
