import Foundation
import GRDB

/// The best version by one target metric: its score and the evaluation round that counted it. Its
/// parameters are never dropped by retention (`applyRetention` pins every version in this table).
public struct BestVersionRecord: Codable, Sendable, Hashable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "bestVersions"
    /// The target metric's name (accuracy, loss, ...).
    public var metric: String
    public var version: Int64
    /// The round's combined value of `metric`.
    public var score: Double
    /// higher-is-better or lower-is-better.
    public var direction: String
    public var accuracy: Double
    public var loss: Double
    /// Agents that answered the round, of the agents it asked.
    public var answered: Int
    public var asked: Int
    /// When the round closed (seconds since 1970).
    public var at: Double
    /// The round's metrics pooled from evaluation statistics (rmse, mae, r2, macro-f1, auc), stored as JSON; nil
    /// when none were reported (or the record predates them).
    public var metrics: [String: Double]?
    public init(metric: String, version: Int64, score: Double, direction: String, accuracy: Double, loss: Double, answered: Int, asked: Int, at: Double,
                metrics: [String: Double]? = nil) {
        self.metrics = metrics
        self.metric = metric
        self.version = version
        self.score = score
        self.direction = direction
        self.accuracy = accuracy
        self.loss = loss
        self.answered = answered
        self.asked = asked
        self.at = at
    }
}

/// One closed evaluation round: a point of the evaluation curve.
public struct EvaluationRoundRecord: Codable, Sendable, Hashable, FetchableRecord, MutablePersistableRecord {
    public static let databaseTableName = "evaluationRounds"
    public var id: Int64?
    public var version: Int64
    /// Combined over the answers (capped weights, trimmed).
    public var accuracy: Double
    public var loss: Double
    public var samples: Int64
    /// Agents that answered, agents the round asked, and the answers its quorum needed.
    public var answered: Int
    public var asked: Int
    public var required: Int
    /// It had its quorum: it counted for the target, the best version and patience.
    public var counted: Bool
    /// The target metric and this round's value of it.
    public var metric: String
    public var score: Double?
    /// It made `version` the best version by `metric`.
    public var best: Bool
    /// When the version was committed and when the round closed (seconds since 1970).
    public var versionCreatedAt: Double
    public var at: Double
    /// Metrics pooled from the answers' evaluation statistics (JSON), and how many answers carried statistics.
    public var metrics: [String: Double]?
    public var statisticsAnswered: Int?
    public init(version: Int64, accuracy: Double, loss: Double, samples: Int64, answered: Int, asked: Int, required: Int, counted: Bool,
                metric: String, score: Double?, best: Bool, versionCreatedAt: Double, at: Double,
                metrics: [String: Double]? = nil, statisticsAnswered: Int? = nil) {
        self.metrics = metrics
        self.statisticsAnswered = statisticsAnswered
        self.version = version
        self.accuracy = accuracy
        self.loss = loss
        self.samples = samples
        self.answered = answered
        self.asked = asked
        self.required = required
        self.counted = counted
        self.metric = metric
        self.score = score
        self.best = best
        self.versionCreatedAt = versionCreatedAt
        self.at = at
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

extension CoordinatorStore {
    /// One closed evaluation round and, when it made a new best version, that version's record, in one
    /// transaction: the curve and the best never disagree. A best version must still have its parameters
    /// (the coordinator pins the versions under evaluation); the version it replaces is released to
    /// retention, which drops it at a later commit if nothing else keeps it.
    public func recordEvaluationRound(_ round: EvaluationRoundRecord, best: BestVersionRecord? = nil) async throws {
        try await pool.write { db in
            var row = round
            try row.insert(db)
            guard let best else { return }
            let bytes = try Int.fetchOne(db, sql: "SELECT length(parameters) FROM modelVersions WHERE version = ?", arguments: [best.version]) ?? 0
            guard bytes > 0 else { throw StoreError.bestVersionDropped(version: best.version) }
            try best.upsert(db)
        }
    }

    /// The best version by each metric, by metric name.
    public func bestVersions() async throws -> [String: BestVersionRecord] {
        try await pool.read { db in
            Dictionary(uniqueKeysWithValues: try BestVersionRecord.fetchAll(db).map { ($0.metric, $0) })
        }
    }

    /// The newest `limit` closed evaluation rounds, newest first.
    public func evaluationRounds(limit: Int) async throws -> [EvaluationRoundRecord] {
        try await pool.read { db in try EvaluationRoundRecord.order(Column("id").desc).limit(limit).fetchAll(db) }
    }

    /// The latest counted round of `version` by `metric`, if any (its score for an export).
    public func countedRound(version: Int64, metric: String) async throws -> EvaluationRoundRecord? {
        try await pool.read { db in
            try EvaluationRoundRecord.filter(Column("version") == version && Column("metric") == metric && Column("counted") == true)
                .order(Column("id").desc).fetchOne(db)
        }
    }

    /// Records that training started (a quorum of agents was connected): a restarted coordinator resumes
    /// training without waiting for the quorum again. The first time only.
    public func recordTrainingStarted(at: Double) async throws {
        try await pool.write { db in
            try db.execute(sql: "INSERT INTO meta (key, value) VALUES ('trainingStartedAt', ?) ON CONFLICT(key) DO NOTHING",
                           arguments: [String(at)])
        }
    }
}
