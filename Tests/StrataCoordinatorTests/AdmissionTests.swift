import Foundation
import Logging
import StrataCore
import StrataStore
import StrataTransport
import StrataWire
import Testing
@testable import StrataCoordinator

/// The first message an admitted agent receives is its welcome. Found by Deploy/chaos.py: right after a
/// coordinator restart, with 20 agents joining at once, an evaluation or training task sent to a session
/// that `admit` had just registered overtook the welcome that the connection's task queued only after
/// `admit` returned; the agent dropped the connection ("task before welcome"), backed off for seconds, and
/// its re-sent update then arrived too stale and was refused.
@Suite struct AdmissionTests {
    @Test func welcomeIsQueuedBeforeAnyTaskTheCoordinatorSendsAfterAdmission() async throws {
        let directory = NSTemporaryDirectory() + "strata-admission-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var configuration = CoordinatorConfiguration(
            tls: TLSConfiguration(certificateChainFile: "unused.crt", privateKeyFile: "unused.key", trustRootsFile: "unused-ca.crt"),
            statePath: directory + "/coordinator.sqlite", model: ModelSpec(kind: .softmaxRegression, featureCount: 4, outputCount: 3))
        configuration.evaluateEvery = 0
        configuration.preprocessing.standardize = false  // hand-made hellos: no statistics phase
        let store = try CoordinatorStore(path: configuration.statePath)
        let coordinator = Coordinator(configuration: configuration, store: store, logger: Logger(label: "test"))
        try await coordinator.restore()

        let (mailbox, continuation) = AsyncStream<Message>.makeStream()
        let hello = Hello(agentVersion: "test", featureCount: 4, trainSampleCount: 10, evalSampleCount: 2, pendingUpdateCount: 0)
        let admission = await coordinator.admit(clientID: "agent-01", hello: hello, mailbox: continuation)
        guard case .welcome(let welcome, _) = admission else {
            Issue.record("agent-01 was refused: \(admission)")
            return
        }
        // Before the connection's own task runs again, the coordinator hands the new session a training
        // task (any other agent's update or the clock can trigger this at that moment).
        await coordinator.aggregateAndDispatch()

        var messages = mailbox.makeAsyncIterator()
        let first = await messages.next()
        guard case .welcome(let received)? = first else {
            Issue.record("the first message in the mailbox is \(first.map { "\($0.type)" } ?? "nothing"), not welcome")
            return
        }
        #expect(received.sessionID == welcome.sessionID)
        let second = await messages.next()
        guard case .task(let task)? = second else {
            Issue.record("expected the training task after the welcome, got \(second.map { "\($0.type)" } ?? "nothing")")
            return
        }
        #expect(task.kind == .train)
    }
}

/// A model larger than a frame travels in parts (§2 "Messages in parts"): agents that announce capability bit 5
/// are told the limit in their welcome (option 4); an agent that cannot receive parts is refused at hello with a
/// reason, instead of receiving a task frame it would refuse.
@Suite struct LargeModelAdmissionTests {
    static func coordinator(maxFrameBytes: Int) async throws -> (Coordinator, String) {
        let directory = NSTemporaryDirectory() + "strata-large-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var configuration = CoordinatorConfiguration(
            tls: TLSConfiguration(certificateChainFile: "unused.crt", privateKeyFile: "unused.key", trustRootsFile: "unused-ca.crt"),
            statePath: directory + "/coordinator.sqlite", model: ModelSpec(kind: .softmaxRegression, featureCount: 99, outputCount: 100))
        configuration.maxFrameBytes = maxFrameBytes
        configuration.evaluateEvery = 0
        configuration.preprocessing.standardize = false
        let store = try CoordinatorStore(path: configuration.statePath)
        let coordinator = Coordinator(configuration: configuration, store: store, logger: Logger(label: "test"))
        try await coordinator.restore()
        return (coordinator, directory)
    }

    @Test func onlyAgentsThatTakePartsJoinAFederationWhoseModelExceedsAFrame() async throws {
        // 10,000 parameters (40 kB) against frames of 16 KiB.
        let (coordinator, directory) = try await Self.coordinator(maxFrameBytes: 16_384)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func admit(_ id: String, _ capabilities: AgentCapabilities) async -> Coordinator.Admission {
            let (_, continuation) = AsyncStream<Message>.makeStream()
            return await coordinator.admit(clientID: id, hello: Hello(agentVersion: "test", featureCount: 99, trainSampleCount: 10, evalSampleCount: 2,
                                                                      pendingUpdateCount: 0, capabilities: capabilities), mailbox: continuation)
        }
        guard case .refuse(let refusal) = await admit("agent-01", [.statistics, .preprocessing]) else {
            Issue.record("an agent without capability bit 5 was admitted")
            return
        }
        #expect(refusal.code == .incompatibleData && refusal.message.contains("travels in parts"), "\(refusal)")
        guard case .welcome(let welcome, _) = await admit("agent-02", .all) else {
            Issue.record("an agent with capability bit 5 was refused")
            return
        }
        #expect(welcome.maxMessageBytes == UInt64(4 * 10_000 + 16_384))
    }

    /// A model whose messages fit a frame accepts no parts at all, and its welcome offers none.
    @Test func smallModelsAdmitEveryAgentAndOfferNoParts() async throws {
        let (coordinator, directory) = try await Self.coordinator(maxFrameBytes: 64 << 20)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for (id, capabilities, announced) in [("agent-01", AgentCapabilities([.preprocessing]), false), ("agent-02", .all, false)] {
            let (_, continuation) = AsyncStream<Message>.makeStream()
            let admission = await coordinator.admit(clientID: id, hello: Hello(agentVersion: "test", featureCount: 99, trainSampleCount: 10, evalSampleCount: 2,
                                                                               pendingUpdateCount: 0, capabilities: capabilities), mailbox: continuation)
            guard case .welcome(let welcome, _) = admission else {
                Issue.record("\(id) was refused: \(admission)")
                continue
            }
            #expect((welcome.maxMessageBytes != nil) == announced, "\(id)")
        }
    }
}
