import Foundation
import GRDB

/// One audit row: an operator action that changes something, who asked, and how it ended.
public struct AuditRecord: Codable, Sendable, FetchableRecord, PersistableRecord {
    public static let databaseTableName = "audit"
    public var id: Int64?
    public var at: Double
    /// The admin certificate's CN.
    public var actor: String
    public var action: String
    public var target: String
    public var detail: String
    /// "ok" or the error code.
    public var result: String
    public init(at: Double, actor: String, action: String, target: String, detail: String, result: String) {
        self.at = at
        self.actor = actor
        self.action = action
        self.target = target
        self.detail = detail
        self.result = result
    }

    public mutating func didInsert(_ inserted: InsertionSuccess) { id = inserted.rowID }
}

public struct RefusalRecord: Codable, Sendable, FetchableRecord {
    public var taskID: Int64
    public var clientID: String
    public var code: Int
    public var reason: String
    public var at: Double
}

/// Accuracy of one model version, sample-weighted over the agents that evaluated it.
public struct VersionAccuracy: Sendable, Hashable {
    public var accuracy: Double
    public var clients: Int
}

/// Reads and writes for the admin API: client history, model history, evictions and the audit log.
extension CoordinatorStore {
    /// An eviction (or, with `eviction` nil, a re-admission) and its audit row, in one transaction.
    public func recordEviction(clientID: String, eviction: StoredEviction?, audit: AuditRecord) async throws {
        try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO clients (id, firstSeen, lastSeen) VALUES (?, ?, ?) ON CONFLICT(id) DO NOTHING
                """, arguments: [clientID, audit.at, audit.at])
            try db.execute(sql: "UPDATE clients SET evictedAt = ?, evictedBy = ?, evictedReason = ? WHERE id = ?",
                           arguments: [eviction?.at, eviction?.by, eviction?.reason, clientID])
            let row = audit
            try row.insert(db)
        }
    }

    public func recordAudit(_ audit: AuditRecord) async throws {
        try await pool.write { db in
            let row = audit
            try row.insert(db)
        }
    }

    /// Newest first.
    public func auditLog(limit: Int) async throws -> [AuditRecord] {
        try await pool.read { db in try AuditRecord.order(Column("id").desc).limit(limit).fetchAll(db) }
    }

    public func client(id: String) async throws -> ClientRecord? {
        try await pool.read { db in try ClientRecord.fetchOne(db, key: id) }
    }

    /// A client's committed updates, newest first.
    public func committedUpdates(clientID: String, limit: Int) async throws -> [CommittedUpdateRecord] {
        try await pool.read { db in
            try CommittedUpdateRecord.filter(Column("clientID") == clientID).order(Column("version").desc).limit(limit).fetchAll(db)
        }
    }

    /// A client's refused updates, newest first.
    public func refusals(clientID: String, limit: Int) async throws -> [RefusalRecord] {
        try await pool.read { db in
            try RefusalRecord.fetchAll(db, sql: """
                SELECT taskID, clientID, code, reason, at FROM refusedUpdates WHERE clientID = ? ORDER BY id DESC LIMIT ?
                """, arguments: [clientID, limit])
        }
    }

    /// The newest `limit` global versions, newest first.
    public func latestModelVersions(limit: Int) async throws -> [ModelVersionSummary] {
        // Without the parameter blobs: a listing of 20 versions of a 4 MB model would read 80 MB.
        try await pool.read { db in
            try ModelVersionSummary.fetchAll(db, sql: """
                SELECT version, createdAt, trigger, lane, laneVersions, laneWeights, updateCount, meanStaleness,
                       length(parameters) AS parameterBytes
                FROM modelVersions ORDER BY version DESC LIMIT ?
                """, arguments: [limit])
        }
    }

    /// The newest `limit` tier-model versions over all tiers, newest first.
    public func latestLaneVersions(limit: Int) async throws -> [LaneVersionRecord] {
        try await pool.read { db in try LaneVersionRecord.order(Column("globalVersion").desc).limit(limit).fetchAll(db) }
    }

    /// Evaluation accuracy of each of `versions` that was evaluated.
    public func accuracies(versions: [Int64]) async throws -> [Int64: VersionAccuracy] {
        guard !versions.isEmpty else { return [:] }
        return try await pool.read { db in
            let placeholders = Array(repeating: "?", count: versions.count).joined(separator: ",")
            let rows = try Row.fetchAll(db, sql: """
                SELECT modelVersion, SUM(accuracy * sampleCount) / SUM(sampleCount) AS accuracy, COUNT(*) AS clients
                FROM evaluations WHERE modelVersion IN (\(placeholders)) AND sampleCount > 0 GROUP BY modelVersion
                """, arguments: StatementArguments(versions))
            return Dictionary(uniqueKeysWithValues: rows.map { row in
                (row["modelVersion"] as Int64, VersionAccuracy(accuracy: row["accuracy"], clients: row["clients"]))
            })
        }
    }
}

/// A global model version without its parameters (`parameterBytes` is 0 when retention dropped them).
public struct ModelVersionSummary: Decodable, Sendable, FetchableRecord {
    public var version: Int64
    public var createdAt: Double
    public var trigger: String
    public var lane: Int?
    public var laneVersions: String
    public var laneWeights: String
    public var updateCount: Int
    public var meanStaleness: Double
    public var parameterBytes: Int
}
