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

    let spec = ModelSpec(kind: .softmaxRegression, featureCount: 1, outputCount: 2)

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
