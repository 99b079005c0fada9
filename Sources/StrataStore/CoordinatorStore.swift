import Foundation
import GRDB
import GRDBSQLite
import StrataCore

/// The coordinator's durable state: one SQLite database in WAL mode.
///
/// What must be atomic is said by the transactions: a new model version, the ids of the updates it
/// contains and the per-client counters are written in ONE transaction (`commitAggregation`), so after
/// a crash either all of them exist or none does. That is what makes `committed` acks truthful.
public final class CoordinatorStore: Sendable {
    public let path: String
    let pool: DatabasePool

    /// Opens (or creates) the database at `path`. `pageSize` is the SQLite page size a NEW database is
    /// created with (an existing one keeps its own); nil is SQLite's default, 4096. See `pageSize(forModelBytes:)`.
    public init(path: String, pageSize: Int? = nil) throws {
        self.path = path
        if let pageSize, !Self.validPageSizes.contains(pageSize) {
            throw StoreError.cannotOpen(path: path, detail: "page size \(pageSize) is not a power of two from 512 to 65536")
        }
        var configuration = Configuration()
        configuration.label = "strata.coordinator"
        configuration.busyMode = .timeout(5)
        configuration.prepareDatabase { db in
            // Before GRDB switches a new database to WAL: after that the page size is fixed.
            if let pageSize { try db.execute(sql: "PRAGMA page_size = \(pageSize)") }
            // WAL with synchronous=FULL: a committed transaction survives power loss, not only a crash.
            try db.execute(sql: "PRAGMA synchronous = FULL")
            // Debian builds SQLite with secure_delete on, which zeroes every freed page: dropping a model's
            // parameters (retention) would write its size again. FAST still zeroes deleted content in
            // pages that are written anyway; freed blob pages keep their bytes until the next blobs reuse them.
            try db.execute(sql: "PRAGMA secure_delete = FAST")
        }
        // Intact and ours, before WAL mode or a migration touches the file (DatabaseIdentity.swift).
        let identity = try DatabaseIdentity.verify(path: path, kind: .coordinator)
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
        } catch let error as DatabaseError {
            throw StoreError.cannotOpen(path: path, detail: error.message ?? "\(error.resultCode)")
        }
        do {
            try Self.migrator.migrate(pool)
            if identity != .strata { try pool.writeWithoutTransaction { try DatabaseIdentity.stamp($0, kind: .coordinator) } }
        } catch let error as DatabaseError {
            throw StoreError.cannotOpen(path: path, detail: error.message ?? "\(error.resultCode)")
        }
    }

    static let validPageSizes = Set((9...16).map { 1 << $0 })

    /// The page size for a new database whose model blobs are `modelBytes` long: 32 KiB from 1 MiB up,
    /// SQLite's 4 KiB below. A 4 MB blob is a chain of ~1000 overflow pages at 4 KiB, each a WAL frame
    /// with its own header, checksum and write, then copied again at checkpoint; at 32 KiB it is ~125,
    /// and committing it took 4.9–5.0 ms of CPU instead of 7.3–10 ms (WAL, synchronous = FULL, this
    /// machine), while a one-row transaction (a task record) costs the same ~0.1 ms. Small models keep
    /// 4 KiB: there every commit is a few small pages, and larger pages only write more bytes.
    public static func pageSize(forModelBytes modelBytes: Int) -> Int {
        modelBytes >= 1 << 20 ? 32_768 : 4_096
    }

    /// The database's page size.
    public func pageSize() async throws -> Int {
        try await pool.read { db in try Int.fetchOne(db, sql: "PRAGMA page_size") ?? 0 }
    }

    /// The writer connection's secure_delete mode (0 off, 1 on, 2 fast).
    func secureDeleteMode() async throws -> Int {
        try await pool.write { db in try Int.fetchOne(db, sql: "PRAGMA secure_delete") ?? -1 }
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
        // Latency tiers, one model per tier (lane) under the global model, and the provenance of each global version.
        migrator.registerMigration("v2-tiers") { db in
            try db.alter(table: "tasks") { t in
                t.add(column: "lane", .integer).notNull().defaults(to: 0)
            }
            try db.alter(table: "committedUpdates") { t in
                t.add(column: "lane", .integer).notNull().defaults(to: 0)
                t.add(column: "laneVersion", .integer).notNull().defaults(to: 0)
                // Dispatch of the task to arrival of the update: the latency history tiers are computed from.
                t.add(column: "latencySeconds", .double)
            }
            try db.alter(table: "clients") { t in
                t.add(column: "tier", .integer)
                t.add(column: "pinnedTier", .integer)
                t.add(column: "latencySeconds", .double)
                t.add(column: "lastLatencySeconds", .double)
                t.add(column: "latencySamples", .integer).notNull().defaults(to: 0)
            }
            try db.alter(table: "modelVersions") { t in
                t.add(column: "lane", .integer)
                t.add(column: "laneVersions", .text).notNull().defaults(to: "[]")
                t.add(column: "laneWeights", .text).notNull().defaults(to: "[]")
            }
            try db.create(table: "laneVersions") { t in
                t.column("lane", .integer).notNull()
                t.column("version", .integer).notNull()
                t.column("createdAt", .double).notNull()
                t.column("parameters", .blob).notNull()
                t.column("pushes", .integer).notNull()
                t.column("globalVersion", .integer).notNull()
                t.primaryKey(["lane", "version"])
            }
            try db.create(table: "tierMoves") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("clientID", .text).notNull().indexed()
                t.column("fromTier", .integer)
                t.column("toTier", .integer).notNull()
                t.column("reason", .text).notNull()
                t.column("latencySeconds", .double)
                t.column("at", .double).notNull()
            }
        }
        // The failure detector's view of every client, and its history.
        migrator.registerMigration("v3-health") { db in
            try db.alter(table: "clients") { t in
                t.add(column: "health", .text)
                t.add(column: "healthSince", .double)
                t.add(column: "healthReason", .text)
            }
            try db.create(table: "healthEvents") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("clientID", .text).notNull().indexed()
                t.column("fromState", .text)
                t.column("toState", .text).notNull()
                t.column("reason", .text).notNull()
                t.column("at", .double).notNull()
            }
        }
        migrator.registerMigration("v4-admin") { db in
            try db.alter(table: "clients") { t in
                t.add(column: "evictedAt", .double)
                t.add(column: "evictedBy", .text)
                t.add(column: "evictedReason", .text)
            }
            // Every operator action that changes something, with its outcome.
            try db.create(table: "audit") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("at", .double).notNull()
                t.column("actor", .text).notNull()
                t.column("action", .text).notNull()
                t.column("target", .text).notNull()
                t.column("detail", .text).notNull()
                t.column("result", .text).notNull()
            }
        }
        // The best version by each target metric (kept through retention and restarts), the evaluation curve
        // (one row per closed evaluation round: answered of asked, counted or not), and training's start.
        migrator.registerMigration("v5-best") { db in
            try db.create(table: "bestVersions") { t in
                t.primaryKey("metric", .text)
                t.column("version", .integer).notNull()
                t.column("score", .double).notNull()
                t.column("direction", .text).notNull()
                t.column("accuracy", .double).notNull()
                t.column("loss", .double).notNull()
                t.column("answered", .integer).notNull()
                t.column("asked", .integer).notNull()
                t.column("at", .double).notNull()
            }
            try db.create(table: "evaluationRounds") { t in
                t.autoIncrementedPrimaryKey("id")
                t.column("version", .integer).notNull().indexed()
                t.column("accuracy", .double).notNull()
                t.column("loss", .double).notNull()
                t.column("samples", .integer).notNull()
                t.column("answered", .integer).notNull()
                t.column("asked", .integer).notNull()
                t.column("required", .integer).notNull()
                t.column("counted", .boolean).notNull()
                t.column("metric", .text).notNull()
                t.column("score", .double)
                t.column("best", .boolean).notNull()
                t.column("versionCreatedAt", .double).notNull()
                t.column("at", .double).notNull()
            }
        }
        // The metrics pooled from the agents' evaluation statistics (RMSE, MAE, R², macro-F1, AUC), as a JSON
        // object per round and per best version: a new metric needs no new column.
        migrator.registerMigration("v6-metrics") { db in
            try db.alter(table: "evaluationRounds") { t in
                t.add(column: "metrics", .text)
                t.add(column: "statisticsAnswered", .integer)
            }
            try db.alter(table: "bestVersions") { t in
                t.add(column: "metrics", .text)
            }
        }
        // The model blobs become the last column of their rows. SQLite keeps a zero-filled blob virtual (its
        // bytes never allocated) only when it ends the record; in the middle, building the row expands it
        // and then copies it into the record: two model-sized allocations at every commit, a third of the
        // coordinator's peak with a 100M-parameter model (docs/PERFORMANCE.md, "Models larger than a frame").
        // Tables are rebuilt as SQLite's ALTER TABLE documentation describes (foreign keys are off during a
        // GRDB migration and checked after it); each row is copied once.
        migrator.registerMigration("v7-blobs-last") { db in
            try db.execute(sql: """
                CREATE TABLE "modelVersions_new" (
                  "version" INTEGER PRIMARY KEY,
                  "createdAt" DOUBLE NOT NULL,
                  "updateCount" INTEGER NOT NULL,
                  "totalWeight" DOUBLE NOT NULL,
                  "meanStaleness" DOUBLE NOT NULL,
                  "trigger" TEXT NOT NULL,
                  "lane" INTEGER,
                  "laneVersions" TEXT NOT NULL DEFAULT '[]',
                  "laneWeights" TEXT NOT NULL DEFAULT '[]',
                  "parameters" BLOB NOT NULL);
                INSERT INTO "modelVersions_new"
                  SELECT version, createdAt, updateCount, totalWeight, meanStaleness, trigger, lane, laneVersions, laneWeights, parameters
                  FROM "modelVersions";
                DROP TABLE "modelVersions";
                ALTER TABLE "modelVersions_new" RENAME TO "modelVersions";
                CREATE TABLE "laneVersions_new" (
                  "lane" INTEGER NOT NULL,
                  "version" INTEGER NOT NULL,
                  "createdAt" DOUBLE NOT NULL,
                  "pushes" INTEGER NOT NULL,
                  "globalVersion" INTEGER NOT NULL,
                  "parameters" BLOB NOT NULL,
                  PRIMARY KEY ("lane", "version"));
                INSERT INTO "laneVersions_new"
                  SELECT lane, version, createdAt, pushes, globalVersion, parameters FROM "laneVersions";
                DROP TABLE "laneVersions";
                ALTER TABLE "laneVersions_new" RENAME TO "laneVersions";
                """)
        }
        return migrator
    }
}

public enum StoreError: Error, Hashable, Sendable, CustomStringConvertible {
    case cannotOpen(path: String, detail: String)
    case modelMismatch(stored: String, configured: String)
    case corruptParameters(version: Int64)
    case versionConflict(expected: Int64, found: Int64)
    case modeMismatch(stored: String, configured: String)
    /// `PRAGMA quick_check` (or SQLite itself) found damage; the program refuses to start on the file.
    case corrupt(path: String, detail: String)
    /// A non-empty file that is not a Strata database of the expected kind; nothing was written to it.
    case notStrataDatabase(path: String, expected: String, detail: String, fix: String)
    /// A version about to be recorded as the best has no parameters any more (retention ran ahead of its evaluation).
    case bestVersionDropped(version: Int64)
    /// SQLite stores a value of at most `limit` bytes (SQLITE_LIMIT_LENGTH); a model's blob is one value.
    case modelTooLarge(bytes: Int, limit: Int)

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
        case .modeMismatch(let stored, let configured):
            return "the state database holds a run in mode \(stored) but the coordinator was started with --mode \(configured): use the same mode to resume it, or another --state path for a new run"
        case .corrupt(let path, let detail):
            return "the state database \(path) is damaged (PRAGMA quick_check: \(detail)); refusing to start on it. Restore it (with its -wal file, if any) from a backup; failing that, salvage what SQLite can still read with `sqlite3 \(path) .recover | sqlite3 recovered.sqlite`, check the result, and start on the recovered file (docs/OPERATIONS.md, \"State database checks\")"
        case .notStrataDatabase(let path, let expected, let detail, let fix):
            return "\(path) is not a \(expected): \(detail). Refusing to use it: \(fix)"
        case .bestVersionDropped(let version):
            return "model version \(version) evaluated as the best has no parameters in the state database any more; it is not recorded as the best"
        case .modelTooLarge(let bytes, let limit):
            return "the model's parameters take \(bytes) bytes, more than the \(limit) bytes SQLite stores in one value (SQLITE_LIMIT_LENGTH; \(limit / 4) float32 parameters): use a smaller model (docs/OPERATIONS.md, \"Models larger than a frame\")"
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
    /// The lane (tier) whose step produced this global version; nil for the initial model.
    public var lane: Int?
    /// Provenance: JSON array of every lane's version combined into this model, and of their cross-tier weights.
    public var laneVersions: String
    public var laneWeights: String
    public init(version: Int64, createdAt: Double, parameters: Data, updateCount: Int, totalWeight: Double, meanStaleness: Double, trigger: String,
                lane: Int? = nil, laneVersions: String = "[]", laneWeights: String = "[]") {
        self.lane = lane
        self.laneVersions = laneVersions
        self.laneWeights = laneWeights
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
    /// The lane (tier model) the task was dispatched from; `baseVersion` counts that lane's versions.
    public var lane: Int
    public init(id: Int64, clientID: String, baseVersion: Int64, kind: Int, dispatchedAt: Double, lane: Int = 0) {
        self.lane = lane
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
    public var lane: Int
    public var laneVersion: Int64
    public var latencySeconds: Double?
    public init(taskID: Int64, clientID: String, version: Int64, baseVersion: Int64, sampleCount: Int64, staleness: Int64, weight: Double, trainLoss: Double, receivedAt: Double,
                lane: Int = 0, laneVersion: Int64 = 0, latencySeconds: Double? = nil) {
        self.lane = lane
        self.laneVersion = laneVersion
        self.latencySeconds = latencySeconds
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
    public var tier: Int?
    public var pinnedTier: Int?
    public var latencySeconds: Double?
    public var lastLatencySeconds: Double?
    public var latencySamples: Int64
    public var health: String?
    public var healthSince: Double?
    public var healthReason: String?
    /// Set while the client is evicted (its certificate is refused until re-admitted).
    public var evictedAt: Double?
    public var evictedBy: String?
    public var evictedReason: String?
}

/// One failure-detector transition as stored.
public struct HealthEventRecord: Codable, Sendable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "healthEvents"
    public var id: Int64?
    public var clientID: String
    public var fromState: String?
    public var toState: String
    public var reason: String
    public var at: Double
    public init(clientID: String, fromState: String?, toState: String, reason: String, at: Double) {
        self.clientID = clientID
        self.fromState = fromState
        self.toState = toState
        self.reason = reason
        self.at = at
    }
}

public struct LaneVersionRecord: Codable, Sendable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "laneVersions"
    public var lane: Int
    public var version: Int64
    public var createdAt: Double
    /// The tier model; empty when it equals the global model of `globalVersion` (untiered modes, and a tier
    /// rebased on the global model it just produced), which is then stored once, in `modelVersions`.
    public var parameters: Data
    public var pushes: Int64
    public var globalVersion: Int64
    public init(lane: Int, version: Int64, createdAt: Double, parameters: Data, pushes: Int64, globalVersion: Int64) {
        self.lane = lane
        self.version = version
        self.createdAt = createdAt
        self.parameters = parameters
        self.pushes = pushes
        self.globalVersion = globalVersion
    }
}

public struct TierMoveRecord: Codable, Sendable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "tierMoves"
    public var id: Int64?
    public var clientID: String
    public var fromTier: Int?
    public var toTier: Int
    public var reason: String
    public var latencySeconds: Double?
    public var at: Double
    public init(clientID: String, fromTier: Int?, toTier: Int, reason: String, latencySeconds: Double?, at: Double) {
        self.clientID = clientID
        self.fromTier = fromTier
        self.toTier = toTier
        self.reason = reason
        self.latencySeconds = latencySeconds
        self.at = at
    }
}

/// A client's latency profile and tier as persisted.
public struct ClientTiering: Sendable, Hashable {
    public var clientID: String
    public var tier: Int?
    public var pinnedTier: Int?
    public var smoothedLatency: Double?
    public var lastLatency: Double?
    public var samples: Int
    /// The failure detector's last persisted state and its reason.
    public var health: String?
    public var healthReason: String?
    public init(clientID: String, tier: Int?, pinnedTier: Int?, smoothedLatency: Double?, lastLatency: Double?, samples: Int,
                health: String? = nil, healthReason: String? = nil) {
        self.health = health
        self.healthReason = healthReason
        self.clientID = clientID
        self.tier = tier
        self.pinnedTier = pinnedTier
        self.smoothedLatency = smoothedLatency
        self.lastLatency = lastLatency
        self.samples = samples
    }
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
    /// Fixed when the database is created (or, for a database from before, when it is first opened by this version).
    public var federationID: UInt64 = 0
    /// Latest version of each lane, index = lane (empty for a run that never stepped a lane).
    public var lanes: [RestoredLane] = []
    /// 0 if tiers were never formed.
    public var tierCount: Int = 0
    public var clients: [ClientTiering] = []
    /// Clients evicted by an operator and not re-admitted.
    public var evicted: [String: StoredEviction] = [:]
    /// The best version by each target metric evaluated so far (by metric name).
    public var best: [String: BestVersionRecord] = [:]
    /// The lowest and highest score of the counted evaluation rounds by each target metric (the record the best
    /// version is held against, whichever way the metric points).
    public var scoreRanges: [String: ClosedRange<Double>] = [:]
    /// Training started in this run (a quorum of agents was connected once); nil before.
    public var trainingStartedAt: Double?
}

public struct StoredEviction: Sendable, Hashable {
    public var at: Double
    public var by: String
    public var reason: String
    public init(at: Double, by: String, reason: String) {
        self.at = at
        self.by = by
        self.reason = reason
    }
}

public struct RestoredLane: Sendable {
    public var version: Int64
    public var parameters: [Float]
    public var pushes: Int64
}

// MARK: - Operations

extension CoordinatorStore {
    /// Restores the latest committed model, or writes version 0 with `initialParameters` for a new run.
    /// Refuses a database that belongs to a run with another model or another aggregation mode.
    public func restoreOrInitialize(spec: ModelSpec, initialParameters: [Float], mode: String = "strata", now: Double) async throws -> RestoredState {
        // `softmax:60x10` as before MLPs existed; an MLP adds its layers: `mlp:2x2:relu:16,16`.
        let specText = "\(spec.kind.rawValue):\(spec.featureCount)x\(spec.outputCount)"
            + (spec.kind == .mlp ? ":\(spec.activation.rawValue):" + spec.hidden.map(String.init).joined(separator: ",") : "")
            + (spec.kind == .custom ? ":" + spec.tensors.map { "\($0.name)\($0.shape)" }.joined(separator: ",") : "")
        return try await pool.write { db in
            let limit = Int(sqlite3_limit(db.sqliteConnection, SQLITE_LIMIT_LENGTH, -1))
            guard spec.parameterCount <= limit / 4 else { throw StoreError.modelTooLarge(bytes: 4 * spec.parameterCount, limit: limit) }
            var created = false
            if let stored = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'model'") {
                guard stored == specText else { throw StoreError.modelMismatch(stored: stored, configured: specText) }
            } else {
                created = true
                try db.execute(sql: "INSERT INTO meta (key, value) VALUES ('model', ?)", arguments: [specText])
                try FloatBlobWriter.insert(ModelVersionRecord(version: 0, createdAt: now, parameters: Data(), updateCount: 0, totalWeight: 0,
                                                              meanStaleness: 0, trigger: "initial"), blob: "parameters", values: initialParameters, db)
            }
            if let stored = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'mode'") {
                guard stored == mode else { throw StoreError.modeMismatch(stored: stored, configured: mode) }
            } else {
                try db.execute(sql: "INSERT INTO meta (key, value) VALUES ('mode', ?)", arguments: [mode])
            }
            guard let latest = try Int64.fetchOne(db, sql: "SELECT MAX(version) FROM modelVersions") else {
                throw StoreError.corruptParameters(version: -1)
            }
            let parameters: [Float]
            if created, initialParameters.count == spec.parameterCount {
                parameters = initialParameters   // just written: not read back (a second and third copy of the model)
            } else {
                guard let blob = try Data.fetchOne(db, sql: "SELECT parameters FROM modelVersions WHERE version = ?", arguments: [latest]),
                      let decoded = FloatBlob.decode(blob), decoded.count == spec.parameterCount else {
                    throw StoreError.corruptParameters(version: latest)
                }
                parameters = decoded
            }
            let maxTask = try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM tasks") ?? 0
            let committed = try Int64.fetchOne(db, sql: "SELECT COUNT(*) FROM committedUpdates") ?? 0
            var state = RestoredState(version: latest, parameters: parameters, nextTaskID: maxTask + 1, committedUpdateCount: committed)
            if let stored = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'federation'"), let id = UInt64(stored, radix: 16) {
                state.federationID = id
            } else {
                state.federationID = UInt64.random(in: 1...UInt64.max)
                try db.execute(sql: "INSERT OR REPLACE INTO meta (key, value) VALUES ('federation', ?)", arguments: [String(state.federationID, radix: 16)])
            }
            let latestLanes = try LaneVersionRecord.fetchAll(db, sql: """
                SELECT l.* FROM laneVersions l
                JOIN (SELECT lane, MAX(version) AS version FROM laneVersions GROUP BY lane) m USING (lane, version)
                ORDER BY l.lane
                """)
            for record in latestLanes {
                // An empty blob: the tier model equals the global model its step produced (stored once, there).
                let blob = record.parameters.isEmpty
                    ? try ModelVersionRecord.fetchOne(db, key: record.globalVersion)?.parameters ?? Data()
                    : record.parameters
                guard let values = FloatBlob.decode(blob), values.count == spec.parameterCount else {
                    throw StoreError.corruptParameters(version: record.version)
                }
                // Lanes are dense from 0; a lane that never stepped starts from the global model.
                while state.lanes.count < record.lane {
                    state.lanes.append(RestoredLane(version: 0, parameters: parameters, pushes: 1))
                }
                state.lanes.append(RestoredLane(version: record.version, parameters: values, pushes: record.pushes))
            }
            state.tierCount = Int(try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'tierCount'") ?? "0") ?? 0
            let clientRows = try ClientRecord.fetchAll(db)
            for row in clientRows {
                if let at = row.evictedAt { state.evicted[row.id] = StoredEviction(at: at, by: row.evictedBy ?? "", reason: row.evictedReason ?? "") }
            }
            for record in try BestVersionRecord.fetchAll(db) { state.best[record.metric] = record }
            for row in try Row.fetchAll(db, sql: """
                SELECT metric, MIN(score) AS lowest, MAX(score) AS highest FROM evaluationRounds
                WHERE counted = 1 AND score IS NOT NULL GROUP BY metric
                """) {
                if let metric: String = row["metric"], let lowest: Double = row["lowest"], let highest: Double = row["highest"], lowest <= highest {
                    state.scoreRanges[metric] = lowest...highest
                }
            }
            state.trainingStartedAt = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'trainingStartedAt'").flatMap(Double.init)
            state.clients = clientRows.map {
                ClientTiering(clientID: $0.id, tier: $0.tier, pinnedTier: $0.pinnedTier, smoothedLatency: $0.latencySeconds,
                              lastLatency: $0.lastLatencySeconds, samples: Int($0.latencySamples),
                              health: $0.health, healthReason: $0.healthReason)
            }
            return state
        }
    }

    /// Records that a task was handed out. Written before the task is sent, so an update for any task an
    /// agent ever received is recognised after a restart.
    public func recordTask(_ task: TaskRecord) async throws {
        try await recordTasks([task])
    }

    /// Records tasks handed out together (one dispatch round) in one transaction: all of them or none.
    public func recordTasks(_ tasks: [TaskRecord]) async throws {
        guard !tasks.isEmpty else { return }
        try await pool.write { db in
            for task in tasks { try task.insert(db) }
        }
    }

    public func task(id: Int64) async throws -> TaskRecord? {
        try await pool.read { db in try TaskRecord.fetchOne(db, key: id) }
    }

    /// The version that folded in this task's update, if it was committed.
    /// Whether the task's agent reported it failed (refusal code 108): such a task is never answered later.
    public func reportedFailed(task taskID: Int64) async throws -> Bool {
        try await pool.read { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM refusedUpdates WHERE taskID = ? AND code = 108)", arguments: [taskID]) ?? false
        }
    }

    public func committedVersion(forTask taskID: Int64) async throws -> Int64? {
        try await pool.read { db in
            try Int64.fetchOne(db, sql: "SELECT version FROM committedUpdates WHERE taskID = ?", arguments: [taskID])
        }
    }

    /// Atomically: the lane's new version, the global version it produced (with its provenance), every
    /// update it contains (the idempotency records), and the per-client counters and latency profiles.
    /// `pinned`: versions whose parameters must stay whatever their age (those under evaluation); the best
    /// versions recorded in `bestVersions` are pinned as well.
    /// - Parameters:
    ///   - values: the global model's parameters, written in place into `version`'s blob (whose `parameters` is
    ///     then an empty placeholder); nil: `version.parameters` holds them.
    ///   - laneValues: likewise for `lane`'s blob, when the tier model differs from the global one.
    public func commitAggregation(_ version: ModelVersionRecord, lane: LaneVersionRecord? = nil, updates: [CommittedUpdateRecord],
                                  profiles: [ClientTiering] = [], retention: ModelRetention = .keepAll, pinned: Set<Int64> = [],
                                  values: [Float]? = nil, laneValues: [Float]? = nil) async throws {
        try await pool.write { db in
            let current = try Int64.fetchOne(db, sql: "SELECT MAX(version) FROM modelVersions") ?? -1
            guard current + 1 == version.version else { throw StoreError.versionConflict(expected: version.version, found: current) }
            if let values {
                try FloatBlobWriter.insert(version, blob: "parameters", values: values, db)
            } else {
                try version.insert(db)
            }
            if let lane, let laneValues {
                try FloatBlobWriter.insert(lane, blob: "parameters", values: laneValues, db)
            } else {
                try lane?.insert(db)
            }
            for update in updates {
                try update.insert(db)
                try db.execute(sql: "UPDATE clients SET updatesAccepted = updatesAccepted + 1 WHERE id = ?", arguments: [update.clientID])
            }
            for profile in profiles {
                try db.execute(sql: """
                    UPDATE clients SET latencySeconds = ?, lastLatencySeconds = ?, latencySamples = ? WHERE id = ?
                    """, arguments: [profile.smoothedLatency, profile.lastLatency, profile.samples, profile.clientID])
            }
            // In the same transaction: a version's parameters are dropped only together with the commit
            // of the version that pushed it out of the kept window.
            try Self.applyRetention(retention, newest: version.version, pinned: pinned, db)
        }
    }

    /// Drops the parameters (not the row: provenance, counts and accuracy stay) of the global versions that
    /// `retention` no longer keeps, at most `maxPerCommit` newly passed versions per commit, so that a
    /// database that kept everything so far catches up gradually. Never drops version 0, the newest
    /// `retention.latest`, every `retention.every`-th, a best version (`bestVersions`), a version in `pinned`
    /// (under evaluation), or a version that a tier's latest model is stored as (an empty tier blob means
    /// "equals this global version", and restore reads it): such a version waits in `meta.pruneDeferred` and
    /// is dropped at the first commit after it is no longer needed (the tier moved on, a better version
    /// replaced it as the best, its evaluation closed). Progress is kept in `meta.prunedThrough`.
    static func applyRetention(_ retention: ModelRetention, newest: Int64, pinned: Set<Int64> = [], _ db: Database, maxPerCommit: Int = 16) throws {
        guard retention.latest > 0 else { return }
        func meta(_ key: String) throws -> String? { try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = ?", arguments: [key]) }
        func setMeta(_ key: String, _ value: String) throws {
            try db.execute(sql: "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           arguments: [key, value])
        }
        let from = Int64(try meta("prunedThrough") ?? "0") ?? 0
        let deferred = (try meta("pruneDeferred") ?? "").split(separator: ",").compactMap { Int64($0) }
        let through = min(newest - Int64(retention.latest), from + Int64(maxPerCommit))
        guard through > from || !deferred.isEmpty else { return }
        // Each tier's latest model, looked up per tier on the (lane, version) key: O(tiers · log n) per
        // commit, not a scan of a table that grows by a row per step.
        var needed = pinned.union(try Int64.fetchAll(db, sql: "SELECT version FROM bestVersions"))
        let maxLane = try Int.fetchOne(db, sql: "SELECT MAX(lane) FROM laneVersions") ?? -1
        for lane in stride(from: 0, through: maxLane, by: 1) {
            if let latest = try Row.fetchOne(db, sql: """
                SELECT globalVersion, length(parameters) AS bytes FROM laneVersions WHERE lane = ? ORDER BY version DESC LIMIT 1
                """, arguments: [lane]), latest["bytes"] as Int == 0 {
                needed.insert(latest["globalVersion"])
            }
        }
        let passed = through > from ? Array((from + 1)...through) : []
        var stillDeferred: [Int64] = []
        for candidate in deferred + passed where !retention.keeps(candidate, newest: newest) {
            if retention.keeps(candidate, newest: newest, pinned: needed) {
                stillDeferred.append(candidate)
                continue
            }
            try db.execute(sql: "UPDATE modelVersions SET parameters = x'' WHERE version = ? AND length(parameters) > 0",
                           arguments: [candidate])
        }
        if through > from { try setMeta("prunedThrough", String(through)) }
        if stillDeferred != deferred { try setMeta("pruneDeferred", stillDeferred.map(String.init).joined(separator: ",")) }
    }

    /// Tier moves and the tier count, in one transaction (membership and its history never disagree).
    public func recordTierMoves(_ moves: [TierMoveRecord], tierCount: Int) async throws {
        try await pool.write { db in
            try db.execute(sql: "INSERT INTO meta (key, value) VALUES ('tierCount', ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           arguments: [String(tierCount)])
            for move in moves {
                try move.insert(db)
                try db.execute(sql: "UPDATE clients SET tier = ? WHERE id = ?", arguments: [move.toTier, move.clientID])
            }
        }
    }

    /// Failure-detector transitions and each client's current state, in one transaction.
    public func recordHealth(_ events: [HealthEventRecord]) async throws {
        guard !events.isEmpty else { return }
        try await pool.write { db in
            for event in events {
                try event.insert(db)
                try db.execute(sql: "UPDATE clients SET health = ?, healthSince = ?, healthReason = ? WHERE id = ?",
                               arguments: [event.toState, event.at, event.reason, event.clientID])
            }
        }
    }

    public func healthEvents(clientID: String? = nil) async throws -> [HealthEventRecord] {
        try await pool.read { db in
            var request = HealthEventRecord.order(Column("id"))
            if let clientID { request = request.filter(Column("clientID") == clientID) }
            return try request.fetchAll(db)
        }
    }

    /// Copies the WAL into the database file and truncates it (a checkpoint for backups and clean stops).
    public func checkpoint() async throws {
        try await pool.writeWithoutTransaction { db in
            _ = try Row.fetchOne(db, sql: "PRAGMA wal_checkpoint(TRUNCATE)")
        }
    }

    /// Records an operator pin (nil removes it).
    public func recordPin(clientID: String, tier: Int?) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE clients SET pinnedTier = ? WHERE id = ?", arguments: [tier, clientID])
        }
    }

    public func tierMoves(clientID: String? = nil) async throws -> [TierMoveRecord] {
        try await pool.read { db in
            var request = TierMoveRecord.order(Column("id"))
            if let clientID { request = request.filter(Column("clientID") == clientID) }
            return try request.fetchAll(db)
        }
    }

    public func laneVersions(lane: Int) async throws -> [LaneVersionRecord] {
        try await pool.read { db in
            try LaneVersionRecord.filter(Column("lane") == lane).order(Column("version")).fetchAll(db)
        }
    }

    public func modelVersions(from version: Int64 = 0) async throws -> [ModelVersionRecord] {
        try await pool.read { db in
            try ModelVersionRecord.filter(Column("version") >= version).order(Column("version")).fetchAll(db)
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
