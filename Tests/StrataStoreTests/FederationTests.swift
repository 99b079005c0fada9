import Foundation
import StrataCore
import Testing
@testable import StrataStore

/// A federation is its coordinator's state database: its id is fixed when the database is created, survives
/// restarts, and an agent drops updates written for another one.
@Suite struct FederationIdentityTests {
    let spec = ModelSpec(kind: .softmaxRegression, featureCount: 8, outputCount: 3)

    @Test func aStateDatabaseKeepsItsFederationIDAndANewOneGetsAnother() async throws {
        let dir = TempDir()
        func open(_ name: String) async throws -> UInt64 {
            let store = try CoordinatorStore(path: dir.file(name))
            return try await store.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: 0).federationID
        }
        let first = try await open("a.sqlite")
        #expect(first != 0)
        #expect(try await open("a.sqlite") == first, "a restart is the same federation")
        #expect(try await open("b.sqlite") != first, "a new state database is a new federation")
    }

    @Test func anAgentDropsUpdatesOfAnotherFederationOnly() async throws {
        let dir = TempDir()
        let state = try AgentStateStore(path: dir.file("agent.sqlite"))
        func save(_ task: Int64) async throws {
            try await state.savePending(.init(taskID: task, baseVersion: 0, createdAt: 0, payload: Data([1, 2, 3])))
        }
        // Written before any federation was known (an agent from before this version): kept.
        try await save(1)
        #expect(try await state.adopt(federation: 0xA) == (nil, 0))
        #expect(try await state.pending().map(\.taskID) == [1])
        try await save(2)
        #expect(try await state.adopt(federation: 0xA) == (0xA, 0), "the same federation keeps its updates")
        #expect(try await state.pending().map(\.taskID) == [1, 2])
        let (previous, dropped) = try await state.adopt(federation: 0xB)
        #expect(previous == 0xA && dropped == 2)
        #expect(try await state.pending().isEmpty)
        // Remembered across a reopen.
        let reopened = try AgentStateStore(path: dir.file("agent.sqlite"))
        #expect(try await reopened.adopt(federation: 0xB) == (0xB, 0))
    }
}
