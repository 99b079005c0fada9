import Foundation
import GRDB
import StrataCore
import Testing
@testable import StrataStore

@Suite struct DatabaseIdentityTests {
    let spec = ModelSpec(kind: .softmaxRegression, featureCount: 8, outputCount: 3)

    func applicationID(_ path: String) throws -> Int32 {
        try DatabaseQueue(path: path).read { try Int32.fetchOne($0, sql: "PRAGMA application_id") ?? 0 }
    }

    /// An agent's training data: the kind of file an operator may give --state by mistake.
    func makeTrainingData(_ path: String) throws {
        try DatabaseQueue(path: path).write { db in
            try db.execute(sql: "CREATE TABLE visits (f0 REAL, f1 REAL, outcome INTEGER)")
            for i in 0..<50 { try db.execute(sql: "INSERT INTO visits VALUES (?, ?, ?)", arguments: [Double(i), Double(i) / 2, i % 3]) }
        }
    }

    func fileBytes(_ path: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: path)) }

    @Test func newDatabasesCarryTheirApplicationID() async throws {
        let dir = TempDir()
        do {
            let store = try CoordinatorStore(path: dir.file("c.sqlite"))
            _ = try await store.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 0)
        }
        #expect(try applicationID(dir.file("c.sqlite")) == 0x5354_5243)
        _ = try AgentStateStore(path: dir.file("a.sqlite"))
        #expect(try applicationID(dir.file("a.sqlite")) == 0x5354_5241)
        // Reopening is quiet, and a new large-model database still gets its larger page size.
        _ = try CoordinatorStore(path: dir.file("c.sqlite"))
        let big = try CoordinatorStore(path: dir.file("big.sqlite"), pageSize: 32_768)
        #expect(try await big.pageSize() == 32_768)
        #expect(try applicationID(dir.file("big.sqlite")) == 0x5354_5243)
    }

    @Test func anAgentsDataFileIsRefusedAndLeftUntouched() throws {
        let dir = TempDir()
        let data = dir.file("records.sqlite")
        try makeTrainingData(data)
        let before = try fileBytes(data)
        for open in [{ _ = try CoordinatorStore(path: data) }, { _ = try AgentStateStore(path: data) }] {
            do {
                try open()
                Issue.record("a non-Strata database was accepted")
            } catch let error as StoreError {
                guard case .notStrataDatabase(let path, _, let detail, let fix) = error else {
                    Issue.record("wrong error: \(error)"); continue
                }
                #expect(path == data)
                #expect(detail.contains("visits"))
                #expect(fix.contains("new file"))
                #expect("\(error)".contains("Refusing to use it"))
            }
        }
        #expect(try fileBytes(data) == before, "the refused file must not be written to")
        #expect(!FileManager.default.fileExists(atPath: data + "-wal"))
    }

    @Test func theCoordinatorAndTheAgentDoNotShareAFile() throws {
        let dir = TempDir()
        _ = try AgentStateStore(path: dir.file("agent.sqlite"))
        #expect { try CoordinatorStore(path: dir.file("agent.sqlite")) } throws: { error in
            guard case .notStrataDatabase(_, _, let detail, _) = error as? StoreError else { return false }
            return detail.contains("agent state file")
        }
        _ = try CoordinatorStore(path: dir.file("coordinator.sqlite"))
        #expect(throws: StoreError.self) { try AgentStateStore(path: dir.file("coordinator.sqlite")) }
        // Another program's application_id, even on an empty schema.
        try DatabaseQueue(path: dir.file("other.sqlite")).writeWithoutTransaction { try $0.execute(sql: "PRAGMA application_id = 1234") }
        #expect(throws: StoreError.self) { try CoordinatorStore(path: dir.file("other.sqlite")) }
        // Not SQLite at all.
        try Data("name,value\na,1\n".utf8).write(to: URL(fileURLWithPath: dir.file("notes.csv")))
        #expect { try CoordinatorStore(path: dir.file("notes.csv")) } throws: { error in
            if case .notStrataDatabase = error as? StoreError { return true }
            return false
        }
    }

    @Test func aDatabaseFromBeforeApplicationIDIsAcceptedAndStamped() async throws {
        let dir = TempDir()
        let path = dir.file("old.sqlite")
        do {
            let store = try CoordinatorStore(path: path)
            _ = try await store.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 0)
        }
        // What an older version left: the same schema, application_id 0.
        try await DatabaseQueue(path: path).writeWithoutTransaction { try $0.execute(sql: "PRAGMA application_id = 0") }
        #expect(try applicationID(path) == 0)
        let reopened = try CoordinatorStore(path: path)
        let restored = try await reopened.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 1)
        #expect(restored.version == 0)
        #expect(try applicationID(path) == 0x5354_5243)

        let agentPath = dir.file("old-agent.sqlite")
        _ = try AgentStateStore(path: agentPath)
        try await DatabaseQueue(path: agentPath).writeWithoutTransaction { try $0.execute(sql: "PRAGMA application_id = 0") }
        _ = try AgentStateStore(path: agentPath)
        #expect(try applicationID(agentPath) == 0x5354_5241)
    }

    @Test func aCorruptPageIsRefusedAtOpen() async throws {
        let dir = TempDir()
        let path = dir.file("c.sqlite")
        do {
            let store = try CoordinatorStore(path: path)
            _ = try await store.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 0)
            for i in 0..<200 {
                try await store.pool.write { db in
                    try db.execute(sql: "INSERT INTO clients (id, firstSeen, lastSeen) VALUES (?, 0, 0)", arguments: ["agent-\(i)"])
                }
            }
            try await store.checkpoint()
        }
        // Overwrite the start of the clients table's root page (a b-tree page in the middle of the file).
        let (root, pageSize) = try await DatabaseQueue(path: path).read { db in
            (try Int.fetchOne(db, sql: "SELECT rootpage FROM sqlite_master WHERE name = 'clients'")!,
             try Int.fetchOne(db, sql: "PRAGMA page_size")!)
        }
        #expect(root > 1)
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.seek(toOffset: UInt64((root - 1) * pageSize))
        try handle.write(contentsOf: Data(repeating: 0xA5, count: 64))
        try handle.close()

        #expect { try CoordinatorStore(path: path) } throws: { error in
            guard case .corrupt(let p, let detail) = error as? StoreError else { return false }
            return p == path && !detail.isEmpty && "\(error)".contains(".recover")
        }
    }
}
