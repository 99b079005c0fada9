import Foundation
import GRDB
import StrataCore

/// The coordinator's durable state: one SQLite database in WAL mode.
///
/// What must be atomic is said by the transactions: a new model version, the ids of the updates it
/// contains and the per-client counters are written in ONE transaction (`commitAggregation`), so after
/// a crash either all of them exist or none does. That is what makes `committed` acks truthful.
public final class CoordinatorStore: Sendable {
    public let path: String
    private let pool: DatabasePool

    public init(path: String) throws {
        self.path = path
        var configuration = Configuration()
        configuration.label = "strata.coordinator"
        configuration.busyMode = .timeout(5)
        configuration.prepareDatabase { db in
            // WAL with synchronous=FULL: a committed transaction survives power loss, not only a crash.
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
        } catch let error as DatabaseError {
            throw StoreError.cannotOpen(path: path, detail: error.message ?? "\(error.resultCode)")
        }
        do {
            try Self.migrator.migrate(pool)
        } catch let error as DatabaseError {
            throw StoreError.cannotOpen(path: path, detail: error.message ?? "\(error.resultCode)")
        }
    }

    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.create(table: "meta") { t in
                t.primaryKey("key", .text)
                t.column("value", .text).notNull()
            }
            try db.create(table: "clients") { t in
                t.primaryKey("id", .text)
                t.column("firstSeen", .double).notNull()
                t.column("lastSeen", .double).notNull()
                t.column("agentVersion", .text).notNull().defaults(to: "")
                t.column("trainSamples", .integer).notNull().defaults(to: 0)
                t.column("evalSamples", .integer).notNull().defaults(to: 0)
                t.column("sessions", .integer).notNull().defaults(to: 0)
                t.column("updatesAccepted", .integer).notNull().defaults(to: 0)
                t.column("updatesRefused", .integer).notNull().defaults(to: 0)
                t.column("lastError", .text)
            }
            try db.create(table: "modelVersions") { t in
                t.primaryKey("version", .integer)
                t.column("createdAt", .double).notNull()
                t.column("parameters", .blob).notNull()
                t.column("updateCount", .integer).notNull()
                t.column("totalWeight", .double).notNull()
                t.column("meanStaleness", .double).notNull()
                t.column("trigger", .text).notNull()
            }
            try db.create(table: "tasks") { t in
                t.primaryKey("id", .integer)
                t.column("clientID", .text).notNull().indexed()
                t.column("baseVersion", .integer).notNull()
                t.column("kind", .integer).notNull()
                t.column("dispatchedAt", .double).notNull()
            }
            // The idempotency table: a task id appears here at most once, tied to the version that folded it in.
            try db.create(table: "committedUpdates") { t in
                t.primaryKey("taskID", .integer)
                t.column("clientID", .text).notNull().indexed()
                t.column("version", .integer).notNull().indexed().references("modelVersions", onDelete: .restrict)
                t.column("baseVersion", .integer).notNull()
                t.column("sampleCount", .integer).notNull()
                t.column("staleness", .integer).notNull()
                t.column("weight", .double).notNull()
                t.column("trainLoss", .double).notNull()
                t.column("receivedAt", .double).notNull()
            }
            try db.create(table: "refusedUpdates") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("taskID", .integer).notNull()
                t.column("clientID", .text).notNull().indexed()
                t.column("code", .integer).notNull()
                t.column("reason", .text).notNull()
                t.column("at", .double).notNull()
            }
            try db.create(table: "evaluations") { t in
                t.primaryKey("taskID", .integer)
                t.column("clientID", .text).notNull()
                t.column("modelVersion", .integer).notNull().indexed()
                t.column("sampleCount", .integer).notNull()
                t.column("loss", .double).notNull()
                t.column("accuracy", .double).notNull()
                t.column("at", .double).notNull()
            }
        }
        return migrator
    }
}

public enum StoreError: Error, Hashable, Sendable, CustomStringConvertible {
    case cannotOpen(path: String, detail: String)
    case modelMismatch(stored: String, configured: String)
    case corruptParameters(version: Int64)
    case versionConflict(expected: Int64, found: Int64)

    public var description: String {
        switch self {
        case .cannotOpen(let path, let detail):
            return "cannot open the state database \(path): \(detail). Check the path and permissions; if the file is damaged, restore it from a backup or start a new run with another --state path"
        case .modelMismatch(let stored, let configured):
            return "the state database holds a run for model \(stored) but the coordinator is configured for \(configured): use the same model flags, or another --state path for a new run"
        case .corruptParameters(let version):
            return "model version \(version) in the state database has a damaged parameter blob: restore the database from a backup"
        case .versionConflict(let expected, let found):
            return "model version conflict: expected to write version \(expected) but the database is at \(found); is another coordinator using the same state file?"
        }
    }
}

// MARK: - Records

public struct ModelVersionRecord: Codable, Sendable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "modelVersions"
    public var version: Int64
    public var createdAt: Double
    public var parameters: Data
    public var updateCount: Int
    public var totalWeight: Double
    public var meanStaleness: Double
    public var trigger: String
    public init(version: Int64, createdAt: Double, parameters: Data, updateCount: Int, totalWeight: Double, meanStaleness: Double, trigger: String) {
        self.version = version
        self.createdAt = createdAt
        self.parameters = parameters
        self.updateCount = updateCount
        self.totalWeight = totalWeight
        self.meanStaleness = meanStaleness
        self.trigger = trigger
    }
}

public struct TaskRecord: Codable, Sendable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "tasks"
    public var id: Int64
    public var clientID: String
    public var baseVersion: Int64
    public var kind: Int
    public var dispatchedAt: Double
    public init(id: Int64, clientID: String, baseVersion: Int64, kind: Int, dispatchedAt: Double) {
        self.id = id
        self.clientID = clientID
        self.baseVersion = baseVersion
        self.kind = kind
        self.dispatchedAt = dispatchedAt
    }
}

public struct CommittedUpdateRecord: Codable, Sendable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "committedUpdates"
    public var taskID: Int64
    public var clientID: String
    public var version: Int64
    public var baseVersion: Int64
    public var sampleCount: Int64
    public var staleness: Int64
    public var weight: Double
    public var trainLoss: Double
    public var receivedAt: Double
    public init(taskID: Int64, clientID: String, version: Int64, baseVersion: Int64, sampleCount: Int64, staleness: Int64, weight: Double, trainLoss: Double, receivedAt: Double) {
        self.taskID = taskID
        self.clientID = clientID
        self.version = version
        self.baseVersion = baseVersion
        self.sampleCount = sampleCount
        self.staleness = staleness
        self.weight = weight
        self.trainLoss = trainLoss
        self.receivedAt = receivedAt
    }
}

public struct ClientRecord: Codable, Sendable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "clients"
    public var id: String
    public var firstSeen: Double
    public var lastSeen: Double
    public var agentVersion: String
    public var trainSamples: Int64
    public var evalSamples: Int64
    public var sessions: Int64
    public var updatesAccepted: Int64
    public var updatesRefused: Int64
    public var lastError: String?
}

public struct EvaluationRecord: Codable, Sendable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "evaluations"
    public var taskID: Int64
    public var clientID: String
    public var modelVersion: Int64
    public var sampleCount: Int64
    public var loss: Double
    public var accuracy: Double
    public var at: Double
    public init(taskID: Int64, clientID: String, modelVersion: Int64, sampleCount: Int64, loss: Double, accuracy: Double, at: Double) {
        self.taskID = taskID
        self.clientID = clientID
        self.modelVersion = modelVersion
        self.sampleCount = sampleCount
        self.loss = loss
        self.accuracy = accuracy
        self.at = at
    }
}

/// What the coordinator restores at start.
public struct RestoredState: Sendable {
    public var version: Int64
    public var parameters: [Float]
    public var nextTaskID: Int64
    public var committedUpdateCount: Int64
}

// MARK: - Operations

extension CoordinatorStore {
    /// Restores the latest committed model, or writes version 0 with `initialParameters` for a new run.
    /// Refuses a database that belongs to a run with another model.
    public func restoreOrInitialize(spec: ModelSpec, initialParameters: [Float], now: Double) async throws -> RestoredState {
        let specText = "\(spec.kind.rawValue):\(spec.featureCount)x\(spec.outputCount)"
        return try await pool.write { db in
            if let stored = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'model'") {
                guard stored == specText else { throw StoreError.modelMismatch(stored: stored, configured: specText) }
            } else {
                try db.execute(sql: "INSERT INTO meta (key, value) VALUES ('model', ?)", arguments: [specText])
                try ModelVersionRecord(version: 0, createdAt: now, parameters: FloatBlob.encode(initialParameters),
                                       updateCount: 0, totalWeight: 0, meanStaleness: 0, trigger: "initial").insert(db)
            }
            guard let latest = try ModelVersionRecord.order(Column("version").desc).fetchOne(db) else {
                throw StoreError.corruptParameters(version: -1)
            }
            guard let parameters = FloatBlob.decode(latest.parameters), parameters.count == spec.parameterCount else {
                throw StoreError.corruptParameters(version: latest.version)
            }
            let maxTask = try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM tasks") ?? 0
            let committed = try Int64.fetchOne(db, sql: "SELECT COUNT(*) FROM committedUpdates") ?? 0
            return RestoredState(version: latest.version, parameters: parameters, nextTaskID: maxTask + 1, committedUpdateCount: committed)
        }
    }

    /// Records that a task was handed out. Written before the task is sent, so an update for any task an
    /// agent ever received is recognised after a restart.
    public func recordTask(_ task: TaskRecord) async throws {
        try await pool.write { db in try task.insert(db) }
    }

    public func task(id: Int64) async throws -> TaskRecord? {
        try await pool.read { db in try TaskRecord.fetchOne(db, key: id) }
    }

    /// The version that folded in this task's update, if it was committed.
    public func committedVersion(forTask taskID: Int64) async throws -> Int64? {
        try await pool.read { db in
            try Int64.fetchOne(db, sql: "SELECT version FROM committedUpdates WHERE taskID = ?", arguments: [taskID])
        }
    }

    /// Atomically: the new model version, every update it contains, and the per-client counters.
    public func commitAggregation(_ version: ModelVersionRecord, updates: [CommittedUpdateRecord]) async throws {
        try await pool.write { db in
            let current = try Int64.fetchOne(db, sql: "SELECT MAX(version) FROM modelVersions") ?? -1
            guard current + 1 == version.version else { throw StoreError.versionConflict(expected: version.version, found: current) }
            try version.insert(db)
            for update in updates {
                try update.insert(db)
                try db.execute(sql: "UPDATE clients SET updatesAccepted = updatesAccepted + 1 WHERE id = ?", arguments: [update.clientID])
            }
        }
    }

    public func recordSession(clientID: String, agentVersion: String, trainSamples: Int64, evalSamples: Int64, now: Double) async throws {
        try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO clients (id, firstSeen, lastSeen, agentVersion, trainSamples, evalSamples, sessions)
                VALUES (?, ?, ?, ?, ?, ?, 1)
                ON CONFLICT(id) DO UPDATE SET lastSeen = excluded.lastSeen, agentVersion = excluded.agentVersion,
                    trainSamples = excluded.trainSamples, evalSamples = excluded.evalSamples, sessions = sessions + 1
                """, arguments: [clientID, now, now, agentVersion, trainSamples, evalSamples])
        }
    }

    public func recordRefusal(taskID: Int64, clientID: String, code: Int, reason: String, now: Double) async throws {
        try await pool.write { db in
            try db.execute(sql: "INSERT INTO refusedUpdates (taskID, clientID, code, reason, at) VALUES (?, ?, ?, ?, ?)",
                           arguments: [taskID, clientID, code, reason, now])
            try db.execute(sql: "UPDATE clients SET updatesRefused = updatesRefused + 1, lastError = ? WHERE id = ?",
                           arguments: [reason, clientID])
        }
    }

    public func recordEvaluation(_ evaluation: EvaluationRecord) async throws {
        try await pool.write { db in try evaluation.upsert(db) }
    }

    public func clients() async throws -> [ClientRecord] {
        try await pool.read { db in try ClientRecord.order(Column("id")).fetchAll(db) }
    }

    public func modelVersion(_ version: Int64) async throws -> ModelVersionRecord? {
        try await pool.read { db in try ModelVersionRecord.fetchOne(db, key: version) }
    }

    public struct Summary: Sendable, Hashable {
        public var latestVersion: Int64
        public var committedUpdates: Int64
        public var refusedUpdates: Int64
        public var duplicateCommittedTaskIDs: Int64
    }

    /// Totals read from durable state (not from counters a crash would reset).
    public func summary() async throws -> Summary {
        try await pool.read { db in
            Summary(
                latestVersion: try Int64.fetchOne(db, sql: "SELECT COALESCE(MAX(version), 0) FROM modelVersions") ?? 0,
                committedUpdates: try Int64.fetchOne(db, sql: "SELECT COUNT(*) FROM committedUpdates") ?? 0,
                refusedUpdates: try Int64.fetchOne(db, sql: "SELECT COUNT(*) FROM refusedUpdates") ?? 0,
                duplicateCommittedTaskIDs: try Int64.fetchOne(db, sql: "SELECT COUNT(*) - COUNT(DISTINCT taskID) FROM committedUpdates") ?? 0)
        }
    }
}
