import Foundation
import GRDB
import StrataCore
import Testing
@testable import StrataStore

/// Model parameters go into their blobs in place (incremental blob I/O), not through a `Data` copy: what is read
/// back is exactly what was committed, for the global model, a tier model that differs from it, and version 0.
@Suite struct FloatBlobWriterTests {
    @Test func committedParametersReadBackExactlyAcrossChunks() async throws {
        let dir = TempDir()
        // 2 features x 300,001 classes: 900,003 values, 3.6 MB, over three 1-MiB chunks and not a multiple of one.
        let spec = ModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 300_001)
        let initial = (0..<spec.parameterCount).map { Float($0 % 977) * 0.25 - 17 }
        let store = try CoordinatorStore(path: dir.file("c.sqlite"))
        let first = try await store.restoreOrInitialize(spec: spec, initialParameters: initial, now: 0)
        #expect(first.parameters == initial)

        let global = initial.map { $0 + 1 }
        let tier = initial.map { -$0 }
        try await store.commitAggregation(
            ModelVersionRecord(version: 1, createdAt: 1, parameters: Data(), updateCount: 1, totalWeight: 1, meanStaleness: 0, trigger: "buffer", lane: 1),
            lane: LaneVersionRecord(lane: 1, version: 1, createdAt: 1, parameters: Data(), pushes: 2, globalVersion: 1),
            updates: [], values: global, laneValues: tier)

        let db = try DatabaseQueue(path: dir.file("c.sqlite"))
        let blobs = try await db.read { db in
            (try Data.fetchOne(db, sql: "SELECT parameters FROM modelVersions WHERE version = 0"),
             try Data.fetchOne(db, sql: "SELECT parameters FROM modelVersions WHERE version = 1"),
             try Data.fetchOne(db, sql: "SELECT parameters FROM laneVersions WHERE lane = 1 AND version = 1"),
             try String.fetchOne(db, sql: "SELECT \"trigger\" FROM modelVersions WHERE version = 1"))
        }
        #expect(blobs.0.flatMap(FloatBlob.decode) == initial)
        #expect(blobs.1.flatMap(FloatBlob.decode) == global)
        #expect(blobs.2.flatMap(FloatBlob.decode) == tier)
        #expect(blobs.3 == "buffer", "the record's other columns are written as the record has them")

        // A restart restores what was committed.
        let restored = try await CoordinatorStore(path: dir.file("c.sqlite")).restoreOrInitialize(spec: spec, initialParameters: [], now: 2)
        #expect(restored.version == 1 && restored.parameters == global)
        #expect(restored.lanes.last?.parameters == tier)
    }
}

extension FloatBlobWriterTests {
    /// A model's blob is one SQLite value: beyond SQLITE_LIMIT_LENGTH (10^9 bytes by default) the store refuses
    /// to start with the reason, instead of failing at the first commit.
    @Test func aModelLargerThanSQLiteStoresIsRefusedAtStart() async throws {
        let dir = TempDir()
        let spec = ModelSpec(kind: .softmaxRegression, featureCount: 25_000_000, outputCount: 10)   // 250,000,010 values: 1.0000004 GB
        let store = try CoordinatorStore(path: dir.file("c.sqlite"))
        await #expect { _ = try await store.restoreOrInitialize(spec: spec, initialParameters: [], now: 0) } throws: { error in
            guard case StoreError.modelTooLarge(let bytes, let limit) = error else { return false }
            return bytes == 4 * spec.parameterCount && limit == 1_000_000_000
        }
    }
}

extension FloatBlobWriterTests {
    /// SQLite leaves a zero-filled blob unallocated only when it ends the row; in the middle it builds the whole
    /// blob in memory (twice) at every insert. Both model tables keep their blob last.
    @Test func modelBlobsEndTheirRows() async throws {
        let dir = TempDir()
        let store = try CoordinatorStore(path: dir.file("c.sqlite"))
        _ = try await store.restoreOrInitialize(spec: ModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 2),
                                                initialParameters: [1, 2, 3, 4, 5, 6], now: 0)
        let db = try DatabaseQueue(path: dir.file("c.sqlite"))
        for table in ["modelVersions", "laneVersions"] {
            let columns = try await db.read { try Row.fetchAll($0, sql: "PRAGMA table_info(\(table))").map { $0["name"] as String } }
            #expect(columns.last == "parameters", "\(table): \(columns)")
        }
    }

    /// A state database written before the blobs moved (migrations up to v6) keeps every version, tier model
    /// and committed update through the move, foreign keys included.
    @Test func anOlderStateDatabaseKeepsItsModelsThroughTheMove() throws {
        let dir = TempDir()
        let queue = try DatabaseQueue(path: dir.file("old.sqlite"))
        try CoordinatorStore.migrator.migrate(queue, upTo: "v6-metrics")
        let v0 = FloatBlob.encode([1, 2, 3]), v1 = FloatBlob.encode([4, 5, 6]), tier = FloatBlob.encode([-1, -2, -3])
        try queue.write { db in
            try db.execute(sql: """
                INSERT INTO modelVersions (version, createdAt, parameters, updateCount, totalWeight, meanStaleness, trigger, lane, laneVersions, laneWeights)
                VALUES (0, 0, ?, 0, 0, 0, 'initial', NULL, '[]', '[]'), (1, 1, ?, 2, 30, 0.5, 'buffer', 1, '[0,1]', '[0.5,0.5]')
                """, arguments: [v0, v1])
            try db.execute(sql: "INSERT INTO laneVersions (lane, version, createdAt, parameters, pushes, globalVersion) VALUES (1, 1, 1, ?, 2, 1)",
                           arguments: [tier])
            try db.execute(sql: """
                INSERT INTO committedUpdates (taskID, clientID, version, baseVersion, sampleCount, staleness, weight, trainLoss, receivedAt)
                VALUES (7, 'agent-01', 1, 0, 10, 0, 10, 0.3, 1)
                """)
        }
        try CoordinatorStore.migrator.migrate(queue)
        try queue.read { db in
            let rows = try Row.fetchAll(db, sql: "SELECT version, parameters, trigger, laneWeights FROM modelVersions ORDER BY version")
            #expect(rows.map { $0["parameters"] as Data } == [v0, v1])
            #expect(rows.map { $0["trigger"] as String } == ["initial", "buffer"])
            #expect(rows.last?["laneWeights"] == "[0.5,0.5]")
            #expect(try Data.fetchOne(db, sql: "SELECT parameters FROM laneVersions WHERE lane = 1 AND version = 1") == tier)
            #expect(try Row.fetchAll(db, sql: "PRAGMA foreign_key_check").isEmpty)
            let columns = try Row.fetchAll(db, sql: "PRAGMA table_info(modelVersions)").map { $0["name"] as String }
            #expect(columns.last == "parameters")
        }
        // The foreign key still holds: a version with a committed update cannot be deleted.
        #expect(throws: DatabaseError.self) {
            try queue.write { try $0.execute(sql: "DELETE FROM modelVersions WHERE version = 1") }
        }
    }
}

extension FloatBlobWriterTests {
    /// An agent's pending update is written into its blob piece by piece (an encoded frame's buffers, over 1 MiB
    /// chunks): what is read back is the concatenation; pieces that do not add up to the announced size are
    /// refused and leave nothing stored.
    @Test func aPendingUpdateIsStoredFromItsPieces() async throws {
        let dir = TempDir()
        let store = try AgentStateStore(path: dir.file("agent.sqlite"))
        let pieces: [[UInt8]] = [Array(repeating: 7, count: 13), [], (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }, [1, 2, 3]]
        let whole = pieces.flatMap { $0 }
        try store.savePendingNow(taskID: 42, baseVersion: 3, createdAt: 9, byteCount: whole.count) { write in
            for piece in pieces { try piece.withUnsafeBytes { try write($0) } }
        }
        let stored = try await store.pending()
        #expect(stored.count == 1 && stored.first?.taskID == 42 && stored.first?.baseVersion == 3)
        #expect(stored.first?.payload == Data(whole))

        #expect(throws: DatabaseError.self) {
            try store.savePendingNow(taskID: 43, baseVersion: 3, createdAt: 9, byteCount: 10) { write in try [UInt8](repeating: 1, count: 11).withUnsafeBytes { try write($0) } }
        }
        #expect(throws: DatabaseError.self) {
            try store.savePendingNow(taskID: 44, baseVersion: 3, createdAt: 9, byteCount: 10) { write in try [UInt8](repeating: 1, count: 9).withUnsafeBytes { try write($0) } }
        }
        #expect(try await store.pending().map(\.taskID) == [42], "a refused save leaves no row")
    }
}
