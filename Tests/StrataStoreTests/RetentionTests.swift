import Foundation
import GRDB
import StrataCore
import Testing
@testable import StrataStore

@Suite struct ModelRetentionTests {
    @Test func keepsTheNewestEveryMthAndTheInitialModel() {
        let retention = ModelRetention(latest: 3, every: 10)
        let kept = (0...25).filter { retention.keeps(Int64($0), newest: 25) }
        #expect(kept == [0, 10, 20, 23, 24, 25])
        #expect((0...25).allSatisfy { ModelRetention.keepAll.keeps(Int64($0), newest: 25) })
        #expect((0...9).filter { ModelRetention(latest: 2, every: 0).keeps(Int64($0), newest: 9) } == [0, 8, 9])
    }

    @Test func aPinnedVersionIsKeptWhateverItsAge() {
        let retention = ModelRetention(latest: 3, every: 10)
        #expect(retention.keeps(7, newest: 1_000_000, pinned: [7]))
        #expect(!retention.keeps(7, newest: 1_000_000, pinned: [8]))
        #expect(ModelRetention(latest: 1, every: 0).keeps(1, newest: 2, pinned: [1]))
    }

    let spec = ModelSpec(kind: .softmaxRegression, featureCount: 1, outputCount: 2)

    func round(_ version: Int64, score: Double, best: Bool = true) -> EvaluationRoundRecord {
        EvaluationRoundRecord(version: version, accuracy: score, loss: 1 - score, samples: 10, answered: 2, asked: 3, required: 2, counted: true,
                              metric: "accuracy", score: score, best: best, versionCreatedAt: Double(version), at: Double(version))
    }

    func best(_ version: Int64, score: Double) -> BestVersionRecord {
        BestVersionRecord(metric: "accuracy", version: version, score: score, direction: "higher-is-better", accuracy: score, loss: 1 - score,
                          answered: 2, asked: 3, at: Double(version))
    }

    /// The issue: at ~100 versions/s the best version was dropped within a second, and `best` reset on restart.
    @Test func theBestVersionKeepsItsParametersAndSurvivesARestartWithItsScore() async throws {
        let dir = TempDir()
        let store = try CoordinatorStore(path: dir.file("c.sqlite"))
        _ = try await store.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 0)
        let retention = ModelRetention(latest: 2, every: 0)
        for version in Int64(1)...3 { try await commit(store, version, retention: retention) }
        try await store.recordEvaluationRound(round(3, score: 0.9), best: best(3, score: 0.9))
        for version in Int64(4)...40 { try await commit(store, version, retention: retention) }
        #expect(try versionsWithParameters(dir.file("c.sqlite")) == [0, 3, 39, 40])

        let reopened = try CoordinatorStore(path: dir.file("c.sqlite"))
        let restored = try await reopened.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 41)
        #expect(restored.best["accuracy"] == best(3, score: 0.9))
        #expect(try await reopened.countedRound(version: 3, metric: "accuracy")?.score == 0.9)

        // A better version replaces it; the old best is released and dropped at the next commit.
        try await reopened.recordEvaluationRound(round(40, score: 0.95), best: best(40, score: 0.95))
        try await commit(reopened, 41, retention: retention)
        try await commit(reopened, 42, retention: retention)
        #expect(try versionsWithParameters(dir.file("c.sqlite")) == [0, 40, 41, 42])
        #expect(try await reopened.bestVersions()["accuracy"]?.version == 40)
        #expect(try await reopened.evaluationRounds(limit: 10).map(\.version) == [40, 3])
    }

    /// The record the best version is held against (RunProgress) survives a restart: the lowest and highest
    /// counted score by metric, whichever version is the best now; uncounted rounds do not count.
    @Test func theCountedScoresRangeIsRestoredByMetric() async throws {
        let dir = TempDir()
        let store = try CoordinatorStore(path: dir.file("c.sqlite"))
        _ = try await store.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 0)
        for version in Int64(1)...3 { try await commit(store, version, retention: .keepAll) }
        try await store.recordEvaluationRound(round(1, score: 0.93), best: best(1, score: 0.93))
        try await store.recordEvaluationRound(round(2, score: 0.91, best: false))
        try await store.recordEvaluationRound(round(3, score: 0.92), best: best(3, score: 0.92))
        var uncounted = round(3, score: 0.99, best: false)
        uncounted.counted = false
        try await store.recordEvaluationRound(uncounted)
        let restored = try await CoordinatorStore(path: dir.file("c.sqlite"))
            .restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 4)
        #expect(restored.scoreRanges["accuracy"] == 0.91...0.93)
        #expect(restored.best["accuracy"]?.version == 3)
        #expect(restored.scoreRanges["loss"] == nil)
    }

    @Test func versionsPinnedByTheCoordinatorWaitAndARecordedBestMustStillHaveItsParameters() async throws {
        let dir = TempDir()
        let store = try CoordinatorStore(path: dir.file("c.sqlite"))
        _ = try await store.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 0)
        let retention = ModelRetention(latest: 1, every: 0)
        try await commit(store, 1, retention: retention)
        // Version 1 is under evaluation while 2 and 3 commit.
        for version in Int64(2)...3 {
            try await store.commitAggregation(
                ModelVersionRecord(version: version, createdAt: 0, parameters: FloatBlob.encode([Float](repeating: 1, count: spec.parameterCount)),
                                   updateCount: 1, totalWeight: 1, meanStaleness: 0, trigger: "buffer"),
                updates: [], retention: retention, pinned: [1])
        }
        #expect(try versionsWithParameters(dir.file("c.sqlite")) == [0, 1, 3])
        try await commit(store, 4, retention: retention)   // its round closed: released
        #expect(try versionsWithParameters(dir.file("c.sqlite")) == [0, 4])
        await #expect(throws: StoreError.bestVersionDropped(version: 2)) {
            try await store.recordEvaluationRound(round(2, score: 0.5), best: best(2, score: 0.5))
        }
        #expect(try await store.bestVersions().isEmpty)
        #expect(try await store.evaluationRounds(limit: 5).isEmpty, "one transaction: no round without its best")
    }

    func commit(_ store: CoordinatorStore, _ version: Int64, lane: LaneVersionRecord? = nil, retention: ModelRetention) async throws {
        let values = [Float](repeating: Float(version), count: spec.parameterCount)
        try await store.commitAggregation(
            ModelVersionRecord(version: version, createdAt: Double(version), parameters: FloatBlob.encode(values), updateCount: 1,
                               totalWeight: 1, meanStaleness: 0, trigger: "buffer", lane: lane?.lane),
            lane: lane, updates: [], retention: retention)
    }

    func versionsWithParameters(_ path: String) throws -> [Int64] {
        try DatabaseQueue(path: path).read { db in
            try Int64.fetchAll(db, sql: "SELECT version FROM modelVersions WHERE length(parameters) > 0 ORDER BY version")
        }
    }

    @Test func dropsParametersAsVersionsLeaveTheWindowAndRestoreStillWorks() async throws {
        let dir = TempDir()
        let store = try CoordinatorStore(path: dir.file("c.sqlite"))
        _ = try await store.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 0)
        let retention = ModelRetention(latest: 4, every: 10)
        for version in Int64(1)...25 { try await commit(store, version, retention: retention) }
        #expect(try versionsWithParameters(dir.file("c.sqlite")) == [0, 10, 20, 22, 23, 24, 25])
        // Every row stays (provenance, counts); the listing says which still have parameters.
        let listed = try await store.latestModelVersions(limit: 100)
        #expect(listed.count == 26)
        #expect(listed.filter { $0.parameterBytes > 0 }.map(\.version) == [25, 24, 23, 22, 20, 10, 0])
        let restored = try await CoordinatorStore(path: dir.file("c.sqlite")).restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 30)
        #expect(restored.version == 25 && restored.parameters == [Float](repeating: 25, count: spec.parameterCount))
        // Dropped blobs' pages are freed without being zeroed (secure_delete FAST, not the distribution's ON).
        #expect(try await store.secureDeleteMode() == 2)
    }

    @Test func aVersionATierIsStoredAsWaitsUntilTheTierMovesOn() async throws {
        let dir = TempDir()
        let store = try CoordinatorStore(path: dir.file("c.sqlite"))
        _ = try await store.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 0)
        let retention = ModelRetention(latest: 2, every: 0)
        // Tier 1's latest model equals global version 1 (stored once, there); tier 0 steps on.
        try await commit(store, 1, lane: LaneVersionRecord(lane: 1, version: 1, createdAt: 1, parameters: Data(), pushes: 1, globalVersion: 1),
                         retention: retention)
        for version in Int64(2)...8 {
            try await commit(store, version, lane: LaneVersionRecord(lane: 0, version: version - 1, createdAt: Double(version), parameters: Data(),
                                                                     pushes: 1, globalVersion: version), retention: retention)
        }
        #expect(try versionsWithParameters(dir.file("c.sqlite")) == [0, 1, 7, 8])
        let restored = try await CoordinatorStore(path: dir.file("c.sqlite")).restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 9)
        #expect(restored.lanes.map(\.parameters) == [[Float](repeating: 8, count: spec.parameterCount), [Float](repeating: 1, count: spec.parameterCount)])
        // Tier 1 steps: version 1 is no longer needed and goes at the next commit.
        try await commit(store, 9, lane: LaneVersionRecord(lane: 1, version: 2, createdAt: 9, parameters: Data(), pushes: 2, globalVersion: 9),
                         retention: retention)
        #expect(try versionsWithParameters(dir.file("c.sqlite")) == [0, 8, 9])
    }

    @Test func aDatabaseThatKeptEverythingCatchesUpSixteenVersionsPerCommit() async throws {
        let dir = TempDir()
        let store = try CoordinatorStore(path: dir.file("c.sqlite"))
        _ = try await store.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 0)
        for version in Int64(1)...40 { try await commit(store, version, retention: .keepAll) }
        #expect(try versionsWithParameters(dir.file("c.sqlite")).count == 41)
        let retention = ModelRetention(latest: 2, every: 0)
        try await commit(store, 41, retention: retention)
        #expect(try versionsWithParameters(dir.file("c.sqlite")) == [0] + Array(17...41))
        try await commit(store, 42, retention: retention)
        try await commit(store, 43, retention: retention)
        #expect(try versionsWithParameters(dir.file("c.sqlite")) == [0, 42, 43])
    }
}
