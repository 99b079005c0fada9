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
