import Foundation
import GRDB
import StrataData
import StrataCore
import Testing
@testable import StrataStore

/// A temporary directory removed when the test ends.
final class TempDir {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "strata-store-\(UUID().uuidString)"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { path + "/" + name }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

private func makeDatabase(_ path: String, _ sql: String) throws {
    let queue = try DatabaseQueue(path: path)
    try queue.write { try $0.execute(sql: sql) }
}

@Suite struct SampleDataSourceTests {
    @Test func writerOutputIsReadBackExactly() throws {
        let dir = TempDir()
        let train = Dataset(featureCount: 3, features: [1, 2, 3, 4, 5, 6], labels: [0, 2])
        let test = Dataset(featureCount: 3, features: [7, 8, 9], labels: [1])
        try SampleDatabaseWriter.write(path: dir.file("a.sqlite"), train: train, test: test, integerLabels: true)
        let loaded = try SampleDataSource(databasePath: dir.file("a.sqlite"), selection: .table(name: "samples", featureColumns: nil)).load()
        #expect(loaded.featureColumns == ["x0", "x1", "x2"])
        #expect(loaded.train.features == train.features)
        #expect(loaded.train.labels == train.labels)
        #expect(loaded.test.features == test.features)
        #expect(loaded.test.labels == test.labels)
    }

    @Test func defaultFeaturesSkipTextPrimaryKeyLabelAndSplit() throws {
        let dir = TempDir()
        try makeDatabase(dir.file("d.sqlite"), """
            CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, age INTEGER, income REAL, score NUMERIC, y INTEGER, part TEXT);
            INSERT INTO t (name, age, income, score, y, part) VALUES ('a', 30, 1.5, 2, 1, 'train'), ('b', 40, 2.5, 3, 0, 'test');
            """)
        let loaded = try SampleDataSource(databasePath: dir.file("d.sqlite"), selection: .table(name: "t", featureColumns: nil),
                                          labelColumn: "y", splitColumn: "part").load()
        #expect(loaded.featureColumns == ["age", "income", "score"])
        #expect(loaded.train.features == [30, 1.5, 2])
        #expect(loaded.test.labels == [0])
    }

    @Test func queryModeWithDeterministicSplit() throws {
        let dir = TempDir()
        var inserts = "CREATE TABLE raw (a REAL, b REAL, c INTEGER);"
        for i in 0..<200 { inserts += "INSERT INTO raw VALUES (\(i), \(i * 2), \(i % 3));" }
        try makeDatabase(dir.file("q.sqlite"), inserts)
        let source = SampleDataSource(databasePath: dir.file("q.sqlite"), selection: .query(sql: "SELECT a * 2 AS f1, b AS f2, c AS label FROM raw WHERE a >= 0"),
                                      testFraction: 0.25, splitSeed: 7)
        let first = try source.load()
        let second = try source.load()
        #expect(first.featureColumns == ["f1", "f2"])
        #expect(first.train.count + first.test.count == 200)
        #expect((30...70).contains(first.test.count))
        #expect(first.test.features == second.test.features)
    }

    @Test func errorsNameTheProblem() throws {
        let dir = TempDir()
        #expect(throws: DataSourceError.fileNotFound(path: dir.file("missing.sqlite"))) {
            try SampleDataSource(databasePath: dir.file("missing.sqlite"), selection: .table(name: "samples", featureColumns: nil)).load()
        }
        try makeDatabase(dir.file("e.sqlite"), """
            CREATE TABLE t (x REAL, label INTEGER, split TEXT);
            INSERT INTO t VALUES (1, 0, 'train'), (NULL, 1, 'test');
            CREATE TABLE u (x REAL, label INTEGER);
            INSERT INTO u VALUES ('abc', 1);
            CREATE TABLE empty (x REAL, label INTEGER);
            CREATE TABLE s (x REAL, label INTEGER, split TEXT);
            INSERT INTO s VALUES (1, 0, 'holdout');
            """)
        let path = dir.file("e.sqlite")
        #expect(throws: DataSourceError.tableNotFound(table: "nope", available: ["empty", "s", "t", "u"])) {
            try SampleDataSource(databasePath: path, selection: .table(name: "nope", featureColumns: nil)).load()
        }
        #expect(throws: DataSourceError.columnNotFound(column: "y", source: "table 't'", available: ["x", "label", "split"])) {
            try SampleDataSource(databasePath: path, selection: .table(name: "t", featureColumns: ["y"])).load()
        }
        #expect(throws: DataSourceError.nullValue(column: "x", row: 2)) {
            try SampleDataSource(databasePath: path, selection: .table(name: "t", featureColumns: nil)).load()
        }
        #expect(throws: DataSourceError.nonNumericValue(column: "x", row: 1, value: "abc")) {
            try SampleDataSource(databasePath: path, selection: .table(name: "u", featureColumns: nil)).load()
        }
        #expect(throws: DataSourceError.emptyResult(source: "table 'empty'")) {
            try SampleDataSource(databasePath: path, selection: .table(name: "empty", featureColumns: nil)).load()
        }
        #expect(throws: DataSourceError.unknownSplitValue(column: "split", row: 1, value: "holdout")) {
            try SampleDataSource(databasePath: path, selection: .table(name: "s", featureColumns: nil)).load()
        }
        #expect(throws: DataSourceError.self) {
            try SampleDataSource(databasePath: path, selection: .query(sql: "SELECT nonsense FROM nowhere")).load()
        }
    }

    @Test func corruptFileIsATypedError() throws {
        let dir = TempDir()
        try Data(repeating: 0x42, count: 8192).write(to: URL(fileURLWithPath: dir.file("junk.sqlite")))
        do {
            _ = try SampleDataSource(databasePath: dir.file("junk.sqlite"), selection: .table(name: "samples", featureColumns: nil)).load()
            Issue.record("a junk file loaded")
        } catch let error as DataSourceError {
            guard case .notADatabase = error else { Issue.record("unexpected \(error)"); return }
            #expect(error.description.contains("not a readable SQLite database"))
        }
    }

    /// --max-rows: the first N rows in rowid order, and the log says the table had more.
    @Test func maxRowsReadsTheFirstRowsAndSaysSo() throws {
        let dir = TempDir()
        let train = Dataset(featureCount: 1, features: (0..<8).map { Float($0) + 0.5 }, labels: [Float](repeating: 0, count: 8))
        let test = Dataset(featureCount: 1, features: [100.5, 101.5], labels: [1, 1])
        try SampleDatabaseWriter.write(path: dir.file("m.sqlite"), train: train, test: test, integerLabels: true)
        let options = { (limit: Int?) in SampleOptions(selection: .table(name: "samples", featureColumns: nil), splitColumn: nil, testFraction: 0.3, maxRows: limit) }
        let limited = try SampleDataSource(databasePath: dir.file("m.sqlite"), options: options(6)).load()
        #expect(limited.rows.read == 6 && limited.rows.stoppedAt == 6)
        #expect((limited.train.features + limited.test.features).sorted() == [0.5, 1.5, 2.5, 3.5, 4.5, 5.5])
        #expect(limited.summaryLines.contains { $0.hasPrefix("rows: 6 read (stopped at --max-rows 6; the source has more)") }, "\(limited.summaryLines)")
        let exact = try SampleDataSource(databasePath: dir.file("m.sqlite"), options: options(10)).load()
        #expect(exact.rows.read == 10 && exact.rows.stoppedAt == nil)
    }
}

@Suite struct CoordinatorStoreTests {
    let spec = ModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 2)

    @Test func aNewDatabaseTakesTheGivenPageSizeAndAnExistingOneKeepsItsOwn() async throws {
        #expect(CoordinatorStore.pageSize(forModelBytes: 4_000_040) == 32_768)
        #expect(CoordinatorStore.pageSize(forModelBytes: 2_440) == 4_096)
        let dir = TempDir()
        let big = ModelSpec(kind: .softmaxRegression, featureCount: 1_000, outputCount: 300)   // 1.2 MB blobs
        let store = try CoordinatorStore(path: dir.file("big.sqlite"), pageSize: 32_768)
        #expect(try await store.pageSize() == 32_768)
        _ = try await store.restoreOrInitialize(spec: big, initialParameters: big.initialParameters(), now: 1)
        let reopened = try CoordinatorStore(path: dir.file("big.sqlite"), pageSize: 4_096)
        #expect(try await reopened.pageSize() == 32_768)
        let restored = try await reopened.restoreOrInitialize(spec: big, initialParameters: big.initialParameters(), now: 2)
        #expect(restored.parameters.count == big.parameterCount)
        #expect(try await CoordinatorStore(path: dir.file("default.sqlite")).pageSize() == 4_096)
        #expect(throws: StoreError.self) { try CoordinatorStore(path: dir.file("bad.sqlite"), pageSize: 3_000) }
    }

    @Test func recordsADispatchRoundOfTasksTogether() async throws {
        let dir = TempDir()
        let store = try CoordinatorStore(path: dir.file("c.sqlite"))
        _ = try await store.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 1)
        try await store.recordTasks([])
        let round = (1...5).map { TaskRecord(id: Int64($0), clientID: "c\($0)", baseVersion: 0, kind: 1, dispatchedAt: 2, lane: $0 % 2) }
        try await store.recordTasks(round)
        for task in round {
            let stored = try await store.task(id: task.id)
            #expect(stored?.clientID == task.clientID)
            #expect(stored?.lane == task.lane)
        }
        // All or none: a round that repeats a task id records nothing.
        await #expect(throws: (any Error).self) {
            try await store.recordTasks([TaskRecord(id: 6, clientID: "c6", baseVersion: 0, kind: 1, dispatchedAt: 3),
                                         TaskRecord(id: 1, clientID: "c1", baseVersion: 0, kind: 1, dispatchedAt: 3)])
        }
        #expect(try await store.task(id: 6) == nil)
        let reopened = try CoordinatorStore(path: dir.file("c.sqlite"))
        let restored = try await reopened.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 4)
        #expect(restored.nextTaskID == 6)
    }

    @Test func initializesThenRestoresTheLatestVersion() async throws {
        let dir = TempDir()
        let store = try CoordinatorStore(path: dir.file("c.sqlite"))
        let state = try await store.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 1)
        #expect(state.version == 0)
        #expect(state.nextTaskID == 1)
        try await store.recordSession(clientID: "a", agentVersion: "t", trainSamples: 5, evalSamples: 1, now: 1)
        try await store.recordTask(TaskRecord(id: 1, clientID: "a", baseVersion: 0, kind: 1, dispatchedAt: 1))
        let params: [Float] = [1, 2, 3, 4, 5, 6]
        try await store.commitAggregation(
            ModelVersionRecord(version: 1, createdAt: 2, parameters: FloatBlob.encode(params), updateCount: 1, totalWeight: 5, meanStaleness: 0, trigger: "buffer"),
            updates: [CommittedUpdateRecord(taskID: 1, clientID: "a", version: 1, baseVersion: 0, sampleCount: 5, staleness: 0, weight: 5, trainLoss: 0.5, receivedAt: 2)])

        let reopened = try CoordinatorStore(path: dir.file("c.sqlite"))
        let restored = try await reopened.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 3)
        #expect(restored.version == 1)
        #expect(restored.parameters == params)
        #expect(restored.nextTaskID == 2)
        #expect(try await reopened.committedVersion(forTask: 1) == 1)
        #expect(try await reopened.clients().first?.updatesAccepted == 1)
    }

    @Test func aCommitIsAllOrNothing() async throws {
        let dir = TempDir()
        let store = try CoordinatorStore(path: dir.file("c.sqlite"))
        _ = try await store.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 1)
        let update = CommittedUpdateRecord(taskID: 9, clientID: "a", version: 1, baseVersion: 0, sampleCount: 1, staleness: 0, weight: 1, trainLoss: 0, receivedAt: 1)
        let version = ModelVersionRecord(version: 1, createdAt: 1, parameters: FloatBlob.encode(spec.initialParameters()), updateCount: 2, totalWeight: 2, meanStaleness: 0, trigger: "buffer")
        // The same task twice in one commit violates the idempotency key: nothing of it may remain.
        await #expect(throws: (any Error).self) { try await store.commitAggregation(version, updates: [update, update]) }
        let summary = try await store.summary()
        #expect(summary.latestVersion == 0)
        #expect(summary.committedUpdates == 0)
        // A version that skips ahead is refused too.
        var skipping = version
        skipping.version = 5
        await #expect(throws: StoreError.versionConflict(expected: 5, found: 0)) { try await store.commitAggregation(skipping, updates: []) }
    }

    @Test func anotherModelShapeIsRefused() async throws {
        let dir = TempDir()
        let store = try CoordinatorStore(path: dir.file("c.sqlite"))
        _ = try await store.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 1)
        let other = ModelSpec(kind: .softmaxRegression, featureCount: 3, outputCount: 2)
        await #expect(throws: StoreError.modelMismatch(stored: "softmax:2x2", configured: "softmax:3x2")) {
            try await store.restoreOrInitialize(spec: other, initialParameters: other.initialParameters(), now: 1)
        }
    }

    @Test func agentPendingUpdatesSurviveReopen() async throws {
        let dir = TempDir()
        let store = try AgentStateStore(path: dir.file("a.sqlite"))
        try await store.savePending(.init(taskID: 3, baseVersion: 1, createdAt: 1, payload: Data([1, 2, 3])))
        try store.savePendingNow(taskID: 4, baseVersion: 1, createdAt: 1, byteCount: 1) { write in try [UInt8(4)].withUnsafeBytes { try write($0) } }
        let reopened = try AgentStateStore(path: dir.file("a.sqlite"))
        #expect(try await reopened.pending().map(\.taskID) == [3, 4])
        try await reopened.acknowledge(taskID: 3, status: "committed", modelVersion: 2, now: 2)
        #expect(try await reopened.pending().map(\.taskID) == [4])
        #expect(try await reopened.committedTasks().map(\.taskID) == [3])
    }
}

@Suite struct AdminStoreTests {
    let spec = ModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 2)

    @Test func evictionsSurviveARestartAndAdmissionClearsThemWithAuditRows() async throws {
        let dir = TempDir()
        let store = try CoordinatorStore(path: dir.file("c.sqlite"))
        _ = try await store.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 1)
        try await store.recordSession(clientID: "a", agentVersion: "t", trainSamples: 5, evalSamples: 1, now: 1)
        try await store.recordEviction(clientID: "a", eviction: StoredEviction(at: 5, by: "ops", reason: "bad data"),
                                       audit: AuditRecord(at: 5, actor: "ops", action: "evict", target: "a", detail: "bad data", result: "ok"))
        let restored = try await CoordinatorStore(path: dir.file("c.sqlite")).restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 6)
        #expect(restored.evicted == ["a": StoredEviction(at: 5, by: "ops", reason: "bad data")])

        try await store.recordEviction(clientID: "a", eviction: nil,
                                       audit: AuditRecord(at: 7, actor: "ops", action: "admit", target: "a", detail: "", result: "ok"))
        let again = try await store.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 8)
        #expect(again.evicted.isEmpty)
        let log = try await store.auditLog(limit: 10)
        #expect(log.map(\.action) == ["admit", "evict"])
        #expect(log.allSatisfy { $0.actor == "ops" && $0.id != nil })
    }

    @Test func accuracyPerVersionIsSampleWeighted() async throws {
        let dir = TempDir()
        let store = try CoordinatorStore(path: dir.file("c.sqlite"))
        _ = try await store.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 1)
        try await store.recordEvaluation(EvaluationRecord(taskID: 1, clientID: "a", modelVersion: 0, sampleCount: 30, loss: 1, accuracy: 0.5, at: 2))
        try await store.recordEvaluation(EvaluationRecord(taskID: 2, clientID: "b", modelVersion: 0, sampleCount: 10, loss: 1, accuracy: 0.9, at: 2))
        let accuracies = try await store.accuracies(versions: [0, 1])
        #expect(accuracies.count == 1)
        #expect(abs((accuracies[0]?.accuracy ?? 0) - 0.6) < 1e-12)
        #expect(accuracies[0]?.clients == 2)
    }
}

@Suite struct LaneRestoreTests {
    let spec = ModelSpec(kind: .softmaxRegression, featureCount: 1, outputCount: 2)

    @Test func tierModelsRestoreFromTheirOwnBlobOrFromTheGlobalVersionTheyEqual() async throws {
        let dir = TempDir()
        let store = try CoordinatorStore(path: dir.file("c.sqlite"))
        _ = try await store.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 1)
        let global1: [Float] = [1, 1, 1, 1], tier0: [Float] = [5, 6, 7, 8], global2: [Float] = [2, 3, 4, 5]
        try await store.commitAggregation(
            ModelVersionRecord(version: 1, createdAt: 2, parameters: FloatBlob.encode(global1), updateCount: 0, totalWeight: 0, meanStaleness: 0, trigger: "buffer", lane: 0),
            lane: LaneVersionRecord(lane: 0, version: 1, createdAt: 2, parameters: FloatBlob.encode(tier0), pushes: 1, globalVersion: 1), updates: [])
        // Tier 1's model equals global version 2: stored once, in modelVersions.
        try await store.commitAggregation(
            ModelVersionRecord(version: 2, createdAt: 3, parameters: FloatBlob.encode(global2), updateCount: 0, totalWeight: 0, meanStaleness: 0, trigger: "buffer", lane: 1),
            lane: LaneVersionRecord(lane: 1, version: 1, createdAt: 3, parameters: Data(), pushes: 1, globalVersion: 2), updates: [])
        let restored = try await CoordinatorStore(path: dir.file("c.sqlite")).restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 4)
        #expect(restored.version == 2 && restored.parameters == global2)
        #expect(restored.lanes.map(\.parameters) == [tier0, global2])
        #expect(restored.lanes.map(\.version) == [1, 1])
    }
}
