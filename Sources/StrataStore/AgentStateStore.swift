import Foundation
import GRDB

/// The agent's own durable state: updates written before they are sent and deleted only after the
/// coordinator's `committed` (or `refused`) acknowledgement.
public final class AgentStateStore: Sendable {
    private let queue: DatabaseQueue

    public struct PendingUpdate: Codable, Sendable, Hashable, FetchableRecord, PersistableRecord {
        public static let databaseTableName = "pendingUpdates"
        public var taskID: Int64
        public var baseVersion: Int64
        public var createdAt: Double
        /// The encoded update message, exactly as it is sent again.
        public var payload: Data
        public init(taskID: Int64, baseVersion: Int64, createdAt: Double, payload: Data) {
            self.taskID = taskID
            self.baseVersion = baseVersion
            self.createdAt = createdAt
            self.payload = payload
        }
    }

    public init(path: String) throws {
        var configuration = Configuration()
        configuration.label = "strata.agent-state"
        configuration.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        // Intact and ours (not, say, the training database given twice), before the migration touches it.
        let identity = try DatabaseIdentity.verify(path: path, kind: .agentState)
        do {
            queue = try DatabaseQueue(path: path, configuration: configuration)
            var migrator = DatabaseMigrator()
            migrator.registerMigration("v1") { db in
                try db.create(table: "pendingUpdates") { t in
                    t.primaryKey("taskID", .integer)
                    t.column("baseVersion", .integer).notNull()
                    t.column("createdAt", .double).notNull()
                    t.column("payload", .blob).notNull()
                }
                try db.create(table: "acknowledged") { t in
                    t.primaryKey("taskID", .integer)
                    t.column("status", .text).notNull()
                    t.column("modelVersion", .integer).notNull()
                    t.column("at", .double).notNull()
                }
            }
            migrator.registerMigration("v2-federation") { db in
                try db.create(table: "meta") { t in
                    t.primaryKey("key", .text)
                    t.column("value", .text).notNull()
                }
            }
            try migrator.migrate(queue)
            if identity != .strata { try queue.writeWithoutTransaction { try DatabaseIdentity.stamp($0, kind: .agentState) } }
        } catch let error as DatabaseError {
            throw StoreError.cannotOpen(path: path, detail: error.message ?? "\(error.resultCode)")
        }
    }

    public func savePending(_ update: PendingUpdate) async throws {
        try await queue.write { db in try update.upsert(db) }
    }

    /// Blocking, for the training thread: the update is durable before the task returns, even if the session
    /// that asked for it is being torn down. The payload (`byteCount` bytes, handed over piece by piece by
    /// `pieces`, e.g. an encoded frame's buffers) is written into its blob in place: binding it as a `Data`
    /// would cost a copy for the `Data`, SQLite's private copy and the record SQLite builds, three copies of
    /// the model for a model-sized update.
    public func savePendingNow(taskID: Int64, baseVersion: Int64, createdAt: Double, byteCount: Int,
                               pieces: (_ write: (UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        try queue.write { db in
            // The payload is the row's last column: SQLite then keeps the zero-filled blob virtual.
            try db.execute(sql: "INSERT OR REPLACE INTO pendingUpdates (taskID, baseVersion, createdAt, payload) VALUES (?, ?, ?, zeroblob(?))",
                           arguments: [taskID, baseVersion, createdAt, byteCount])
            guard byteCount > 0 else { return }
            try FloatBlobWriter.write(byteCount: byteCount, table: PendingUpdate.databaseTableName, column: "payload", rowID: taskID, db, pieces: pieces)
        }
    }

    /// Records the federation the coordinator announced. Pending updates written for another federation (a new
    /// coordinator state since) can never be committed there and could be mistaken for this run's tasks: they
    /// are deleted, in the same transaction. Returns the federation before and how many updates were deleted.
    public func adopt(federation: UInt64) async throws -> (previous: UInt64?, dropped: Int) {
        try await queue.write { db in
            let previous = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'federation'").flatMap { UInt64($0, radix: 16) }
            var dropped = 0
            if let previous, previous != federation {
                dropped = try PendingUpdate.deleteAll(db)
            }
            try db.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES ('federation', ?)", arguments: [String(federation, radix: 16)])
            return (previous, dropped)
        }
    }

    public func pending() async throws -> [PendingUpdate] {
        try await queue.read { db in try PendingUpdate.order(Column("taskID")).fetchAll(db) }
    }

    /// Deletes the pending update and remembers the outcome (the agent's side of the exactly-once audit).
    /// Acks for anything not pending (evaluation results, repeated acks) change nothing.
    public func acknowledge(taskID: Int64, status: String, modelVersion: Int64, now: Double) async throws {
        try await queue.write { db in
            guard try PendingUpdate.deleteOne(db, key: taskID) else { return }
            try db.execute(sql: "INSERT OR REPLACE INTO acknowledged (taskID, status, modelVersion, at) VALUES (?, ?, ?, ?)",
                           arguments: [taskID, status, modelVersion, now])
        }
    }

    /// Task ids the coordinator acknowledged as committed, with the version it named.
    public func committedTasks() async throws -> [(taskID: Int64, modelVersion: Int64)] {
        try await queue.read { db in
            try Row.fetchAll(db, sql: "SELECT taskID, modelVersion FROM acknowledged WHERE status = 'committed' ORDER BY taskID")
                .map { ($0["taskID"], $0["modelVersion"]) }
        }
    }
}
