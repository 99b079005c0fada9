import Foundation
import Logging
import NIOConcurrencyHelpers
import StrataCore
import StrataStore
import StrataTransport
import StrataWire
import Testing
@testable import StrataCoordinator

/// A coordinator on a temporary store, with agents driven by hand through `admit` and `handleUpdate`
/// exactly as the session runner drives them.
final class CoordinatorFixture: @unchecked Sendable {
    let directory: String
    let coordinator: Coordinator
    static let spec = ModelSpec(kind: .softmaxRegression, featureCount: 4, outputCount: 3)

    init(_ configure: (inout CoordinatorConfiguration) -> Void = { _ in }) async throws {
        directory = NSTemporaryDirectory() + "strata-hardening-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var configuration = CoordinatorConfiguration(
            tls: TLSConfiguration(certificateChainFile: "unused.crt", privateKeyFile: "unused.key", trustRootsFile: "unused-ca.crt"),
            statePath: directory + "/coordinator.sqlite", model: Self.spec)
        configuration.evaluateEvery = 0
        configuration.preprocessing.standardize = false  // hand-made hellos: no statistics phase
        configure(&configuration)
        let store = try CoordinatorStore(path: configuration.statePath)
        coordinator = Coordinator(configuration: configuration, store: store, logger: Logger(label: "test"))
        try await coordinator.restore()
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    final class Agent: @unchecked Sendable {
        let id: String
        let handle: AgentSessionHandle?
        let refusal: ErrorMessage?
        var messages: AsyncStream<Message>.AsyncIterator
        init(id: String, handle: AgentSessionHandle?, refusal: ErrorMessage?, messages: AsyncStream<Message>) {
            self.id = id
            self.handle = handle
            self.refusal = refusal
            self.messages = messages.makeAsyncIterator()
        }

        /// The next message that is not a heartbeat.
        func next() async -> Message? {
            while let message = await messages.next() {
                if case .heartbeat = message { continue }
                return message
            }
            return nil
        }

        func nextTask() async throws -> TrainingTask {
            while let message = await next() {
                if case .task(let task) = message { return task }
            }
            throw HarnessFailure("\(id): the mailbox closed before a task")
        }

        func nextAck() async throws -> Ack {
            while let message = await next() {
                if case .ack(let ack) = message { return ack }
            }
            throw HarnessFailure("\(id): the mailbox closed before an ack")
        }
    }

    func join(_ id: String, train: UInt64 = 100, eval: UInt64 = 20, capabilities: AgentCapabilities = []) async -> Agent {
        let (stream, continuation) = AsyncStream<Message>.makeStream()
        let hello = Hello(agentVersion: "test", featureCount: 4, trainSampleCount: train, evalSampleCount: eval, pendingUpdateCount: 0,
                          capabilities: capabilities)
        switch await coordinator.admit(clientID: id, hello: hello, mailbox: continuation) {
        case .welcome(_, let handle):
            let agent = Agent(id: id, handle: handle, refusal: nil, messages: stream)
            _ = await agent.next()   // the welcome
            await coordinator.sessionStarted(handle)
            return agent
        case .refuse(let error):
            return Agent(id: id, handle: nil, refusal: error, messages: stream)
        case .over(let goodbye):
            return Agent(id: id, handle: nil, refusal: ErrorMessage(code: .shuttingDown, message: "over: \(goodbye.message)"), messages: stream)
        }
    }

    static func update(for task: TrainingTask, samples: UInt64 = 100, scale: Float = 0.01, taskID: UInt64? = nil,
                       evalSamples: UInt64 = 20, evalAccuracy: Float = 0.5) -> Update {
        let values = (0..<spec.parameterCount).map { Float(($0 % 7) - 3) * scale }
        return Update(taskID: taskID ?? task.taskID, baseVersion: task.baseVersion, sampleCount: samples, trainLoss: 1,
                      evalSampleCount: evalSamples, evalLoss: 1, evalAccuracy: evalAccuracy, trainMillis: 1,
                      delta: task.kind == .train ? ModelTensors.encode(values, spec: spec) : [])
    }
}

struct HarnessFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

@Suite struct WireCountTests {
    /// The issue's frame: a hello with trainSampleCount = 2^64 − 1 killed the coordinator (trapping Int64(x)).
    @Test func aHelloCountAboveTheBoundIsRefusedWithOutOfRange() async throws {
        let fixture = try await CoordinatorFixture()
        for (train, eval) in [(UInt64.max, UInt64(1)), (1, UInt64.max), (UInt64(1) << 63, 1), (1_000_000_001, 1)] {
            let agent = await fixture.join("agent-01", train: train, eval: eval)
            #expect(agent.refusal?.code == .outOfRange, "hello train \(train) eval \(eval): \(String(describing: agent.refusal))")
        }
        let honest = await fixture.join("agent-01", train: 1_000_000_000, eval: 5)
        #expect(honest.refusal == nil)
    }

    @Test func anUpdateMayNotClaimMoreRowsThanItsHello() async throws {
        let fixture = try await CoordinatorFixture { $0.aggregation.rule.bufferSize = 5 }
        let agent = await fixture.join("agent-01", train: 100)
        for claimed in [UInt64.max, UInt64(1) << 63, 101] {
            let task = try await agent.nextTask()
            await fixture.coordinator.handleUpdate(CoordinatorFixture.update(for: task, samples: claimed), from: agent.handle!)
            let ack = try await agent.nextAck()
            #expect(ack.status == .refused && ack.code == .outOfRange, "sampleCount \(claimed): \(ack)")
        }
        let task = try await agent.nextTask()
        await fixture.coordinator.handleUpdate(CoordinatorFixture.update(for: task, samples: 100), from: agent.handle!)
        #expect(try await agent.nextAck().status == .received)
    }

    /// The default cap (ratio 1): an agent announcing 4x the median's rows weighs as the median agent, so two
    /// aligned attackers count as two agents, not eight (docs/SECURITY.md, sign-flip measurements). Evaluation
    /// answers keep 4x: the federation's figures stay the pooled rows' when honest agents differ in size.
    @Test func byDefaultNoAgentWeighsMoreThanTheMedianOne() async throws {
        let fixture = try await CoordinatorFixture()
        for (id, rows) in [("agent-01", UInt64(100)), ("agent-02", 120), ("agent-03", 400)] { _ = await fixture.join(id, train: rows) }
        #expect(await fixture.coordinator.sampleWeightCap() == 120)
        #expect(EvaluationCombination().weights([.init(samples: 100, accuracy: 0.5, loss: 1), .init(samples: 120, accuracy: 0.5, loss: 1),
                                                 .init(samples: 600, accuracy: 1, loss: 0)]) == [100, 120, 480])
    }

    @Test func anEvaluationAnswerMayNotClaimMoreRowsThanItsHello() async throws {
        let fixture = try await CoordinatorFixture { $0.aggregation.rule.bufferSize = 1; $0.evaluateEvery = 1 }
        let agent = await fixture.join("agent-01", train: 100, eval: 20)
        let task = try await agent.nextTask()
        await fixture.coordinator.handleUpdate(CoordinatorFixture.update(for: task), from: agent.handle!)
        var evaluation: TrainingTask?
        while evaluation == nil {
            let next = try await agent.nextTask()
            if next.kind == .evaluate { evaluation = next }
        }
        await fixture.coordinator.handleUpdate(CoordinatorFixture.update(for: evaluation!, evalSamples: 1 << 62, evalAccuracy: 1), from: agent.handle!)
        var ack = try await agent.nextAck()
        while ack.taskID != evaluation!.taskID { ack = try await agent.nextAck() }
        #expect(ack.status == .refused && ack.code == .outOfRange)
        #expect(await fixture.coordinator.lastEvaluation == nil)
    }
}

@Suite struct OwnershipTests {
    /// An update naming another client's committed task used to be answered `committed` with its version.
    @Test func anotherClientsCommittedTaskIsWrongClient() async throws {
        let fixture = try await CoordinatorFixture { $0.aggregation.rule.bufferSize = 1 }
        let owner = await fixture.join("agent-01")
        let other = await fixture.join("agent-02")
        let task = try await owner.nextTask()
        await fixture.coordinator.handleUpdate(CoordinatorFixture.update(for: task), from: owner.handle!)
        await fixture.coordinator.waitUntilCommitted()
        var ownerAck = try await owner.nextAck()
        while ownerAck.status != .committed { ownerAck = try await owner.nextAck() }

        let otherTask = try await other.nextTask()
        await fixture.coordinator.handleUpdate(CoordinatorFixture.update(for: otherTask, taskID: task.taskID), from: other.handle!)
        let ack = try await other.nextAck()
        #expect(ack.status == .refused && ack.code == .wrongClient, "\(ack)")
    }

    @Test func anotherClientsInFlightTaskIsWrongClient() async throws {
        let fixture = try await CoordinatorFixture { $0.aggregation.rule.bufferSize = 10 }
        let owner = await fixture.join("agent-01")
        let other = await fixture.join("agent-02")
        let task = try await owner.nextTask()
        await fixture.coordinator.handleUpdate(CoordinatorFixture.update(for: task), from: owner.handle!)
        #expect(try await owner.nextAck().status == .received)
        let otherTask = try await other.nextTask()
        await fixture.coordinator.handleUpdate(CoordinatorFixture.update(for: otherTask, taskID: task.taskID), from: other.handle!)
        let ack = try await other.nextAck()
        #expect(ack.status == .refused && ack.code == .wrongClient, "\(ack)")
    }
}

@Suite struct SessionEndTests {
    /// The replaced session used to get goodbye with retry-after 0: the honest agent exited for good.
    @Test func aReplacedSessionIsToldToComeBack() async throws {
        let fixture = try await CoordinatorFixture()
        let first = await fixture.join("agent-01")
        _ = await fixture.join("agent-01")
        var goodbye: Goodbye?
        while let message = await first.next() {
            if case .goodbye(let g) = message { goodbye = g }
        }
        #expect(goodbye?.reason == .replaced)
        #expect((goodbye?.retryAfterMillis ?? 0) > 0)
    }

    /// At a normal end no agent may be left holding a `received` update it can never delete.
    @Test func theEndOfAFederationAnswersEveryReceivedUpdate() async throws {
        let fixture = try await CoordinatorFixture { $0.aggregation.rule.bufferSize = 5; $0.aggregation.rule.bufferTimeout = nil }
        let agent = await fixture.join("agent-01")
        _ = await fixture.join("agent-02")
        let task = try await agent.nextTask()
        await fixture.coordinator.handleUpdate(CoordinatorFixture.update(for: task), from: agent.handle!)
        #expect(try await agent.nextAck().status == .received)
        await fixture.coordinator.requestStop(.maxDuration, detail: "test")
        var final: Ack?
        var goodbye: Goodbye?
        while let message = await agent.next() {
            switch message {
            case .ack(let ack) where ack.taskID == task.taskID: final = ack
            case .goodbye(let g): goodbye = g
            default: break
            }
        }
        #expect(final?.status == .refused && final?.code == .shuttingDown, "\(String(describing: final))")
        #expect(goodbye != nil && goodbye?.retryAfterMillis == 0)
    }
}

@Suite struct SessionClockTests {
    let start = ContinuousClock.now

    @Test func theHelloTimeoutClosesWithAnError() {
        var clock = SessionClock(helloTimeout: .seconds(10), idleTimeout: .seconds(3), heartbeatInterval: .seconds(1))
        #expect(clock.next(now: start + .seconds(9), started: start, lastHeard: start, admittedAt: nil) == .wait(.milliseconds(250)))
        guard case .close(let error, _) = clock.next(now: start + .seconds(10), started: start, lastHeard: start, admittedAt: nil) else {
            Issue.record("no close at the hello timeout"); return
        }
        #expect(error.code == .heartbeatTimeout)
    }

    /// An idle timeout below 10 s used to act as 10 s: the watchdog slept out the hello timeout first.
    @Test func theIdleTimeoutIsHonouredExactlyAfterAdmission() {
        var clock = SessionClock(helloTimeout: .seconds(10), idleTimeout: .seconds(3), heartbeatInterval: .seconds(10))
        let admitted = start + .milliseconds(100)
        #expect(clock.next(now: admitted, started: start, lastHeard: admitted, admittedAt: admitted) == .wait(.seconds(3)))
        guard case .close(let error, _) = clock.next(now: admitted + .seconds(3), started: start, lastHeard: admitted, admittedAt: admitted) else {
            Issue.record("no close at the idle timeout"); return
        }
        #expect(error.code == .heartbeatTimeout)
        #expect(error.message.contains("3 s"))
    }

    @Test func heartbeatRequestsGoOutEveryInterval() {
        var clock = SessionClock(helloTimeout: .seconds(10), idleTimeout: .seconds(15), heartbeatInterval: .seconds(2))
        #expect(clock.next(now: start + .seconds(1), started: start, lastHeard: start + .seconds(1), admittedAt: start) == .wait(.seconds(1)))
        #expect(clock.next(now: start + .seconds(2), started: start, lastHeard: start + .seconds(2), admittedAt: start) == .sendHeartbeat(sequence: 1))
        #expect(clock.next(now: start + .seconds(3), started: start, lastHeard: start + .seconds(3), admittedAt: start) == .wait(.seconds(1)))
        #expect(clock.next(now: start + .seconds(4), started: start, lastHeard: start + .seconds(4), admittedAt: start) == .sendHeartbeat(sequence: 2))
    }
}
