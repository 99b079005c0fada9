import Dispatch
import Foundation
import Logging
import NIOCore
import StrataCoordinator
import StrataCore
import StrataStore
import StrataTransport
import StrataWire

/// The coordinator's message handling as agents reach it: up to four agents' sessions, each a sequence
/// of messages dispatched the way `AgentServer.runSession` dispatches them (hello → `admit`, then
/// `sessionStarted`; update → `handleUpdate`; goodbye, error or an out-of-place message → the session
/// ends). Agents answer the tasks the coordinator actually sent them (their ids and base versions, with
/// well-shaped deltas) often enough to reach folding, commits and evaluation, and send arbitrary
/// counts, shapes, names and values as often.
///
/// Input: a byte choosing the aggregation mode, then operations of a few bytes each (`Op`), at most
/// `maxOperations`. Each input runs against a fresh coordinator and state database (on /dev/shm when
/// there is one), so an input that crashes crashes on its own.
///
/// Invariants: nothing traps; a new session's first message is its welcome; every update a live
/// session sends is answered with an ack for its task id before `handleUpdate` returns.
public final class CoordinatorTarget: @unchecked Sendable {
    static let spec = ModelSpec(kind: .softmaxRegression, featureCount: 4, outputCount: 3)
    static let agentCount = 4
    static let maxOperations = 48

    private let directory: String
    private let lock = NSLock()
    private var inputs = 0

    public init() {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        directory = base + "/strata-fuzz-\(ProcessInfo.processInfo.processIdentifier)-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    /// For libFuzzer's synchronous callback (never called on a Swift concurrency thread).
    public func runBlocking(_ data: [UInt8]) throws(FuzzFailure) {
        let done = DispatchSemaphore(value: 0)
        let outcome = OutcomeBox()
        Task {
            do { try await self.run(data) } catch { outcome.failure = error as? FuzzFailure ?? FuzzFailure("\(error)") }
            done.signal()
        }
        done.wait()
        if let failure = outcome.failure { throw failure }
    }

    public func run(_ data: [UInt8]) async throws {
        let path = lock.withLock { () -> String in
            inputs += 1
            return directory + "/coordinator-\(inputs).sqlite"
        }
        defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
        prepareDatabase(at: path)
        var input = FuzzInput(data)
        let mode = AggregationMode.allCases[Int(input.u8()) % AggregationMode.allCases.count]
        let coordinator = try await Self.makeCoordinator(mode: mode, path: path)
        var run = Run(coordinator: coordinator)
        var operations = 0
        while !input.isAtEnd, operations < Self.maxOperations {
            operations += 1
            try await run.step(&input)
        }
        await run.endAll()
    }

    /// A migrated, empty state database, copied for each input: opening and migrating a new one is most
    /// of the cost of a short input.
    private lazy var template: String? = {
        let path = directory + "/template.sqlite"
        do {
            _ = try CoordinatorStore(path: path)  // migrates, then closes when released
            return path
        } catch {
            return nil
        }
    }()

    private func prepareDatabase(at path: String) {
        guard let template = lock.withLock({ template }) else { return }
        for suffix in ["", "-wal"] where FileManager.default.fileExists(atPath: template + suffix) {
            try? FileManager.default.copyItem(atPath: template + suffix, toPath: path + suffix)
        }
    }

    static func makeCoordinator(mode: AggregationMode, path: String) async throws -> Coordinator {
        var configuration = CoordinatorConfiguration(
            tls: TLSConfiguration(certificateChainFile: "unused.crt", privateKeyFile: "unused.key", trustRootsFile: "unused-ca.crt"),
            statePath: path, model: spec)
        configuration.aggregation.mode = mode
        configuration.preprocessing.standardize = false  // hand-made hellos: no statistics phase
        // Small buffers and rounds, one profiling task, tiers formed at once: a few updates reach a
        // commit, an evaluation round and the tier machinery.
        configuration.aggregation.rule.bufferSize = 2
        configuration.tiering.policy.profilingTasks = 1
        configuration.tiering.formationTimeout = .zero
        configuration.evaluateEvery = 1
        configuration.evaluationTimeout = .seconds(1)
        configuration.admin = nil
        configuration.metrics = nil
        let store = try CoordinatorStore(path: path)
        let coordinator = Coordinator(configuration: configuration, store: store,
                                      logger: Logger(label: "strata.fuzz", factory: { _ in SwiftLogNoOpLogHandler() }))
        try await coordinator.restore()
        return coordinator
    }
}

private final class OutcomeBox: @unchecked Sendable {
    var failure: FuzzFailure?
}

/// One agent's connection: its session handle and what the coordinator sent it.
private final class Agent {
    let clientID: String
    let handle: AgentSessionHandle
    let continuation: AsyncStream<Message>.Continuation
    var mailbox: AsyncStream<Message>.Iterator
    var tasks: [TrainingTask] = []
    var sawWelcome = false
    var closed = false

    init(clientID: String, handle: AgentSessionHandle, stream: AsyncStream<Message>, continuation: AsyncStream<Message>.Continuation) {
        self.clientID = clientID
        self.handle = handle
        self.continuation = continuation
        self.mailbox = stream.makeAsyncIterator()
    }
}

/// STRATA_FUZZ_TRACE=1: print what the agents receive (to check that a seed reaches what it should).
private let trace = ProcessInfo.processInfo.environment["STRATA_FUZZ_TRACE"] == "1"

/// Marks the end of what is in a mailbox: `AsyncStream` has no non-blocking poll.
private let sentinel = Message.error(ErrorMessage(code: ErrorCode(rawValue: 0xFFFF), message: "fuzz: end of mailbox"))

private struct Run {
    let coordinator: Coordinator
    var agents: [Agent?] = Array(repeating: nil, count: CoordinatorTarget.agentCount)
    /// Each slot's decoder state for messages in parts, as the server's decoder keeps it per connection.
    var assemblers = Array(repeating: MessageAssembler(maxMessageBytes: 4_096), count: CoordinatorTarget.agentCount)

    init(coordinator: Coordinator) { self.coordinator = coordinator }

    enum Op: UInt8 {
        case hello, update, updateAgain, tick, heartbeat, goodbye, rawFrame, outOfPlace
    }

    mutating func step(_ input: inout FuzzInput) async throws(FuzzFailure) {
        let op = Op(rawValue: input.u8() % 8)!
        let slot = Int(input.u8()) % agents.count
        let message: Message
        switch op {
        case .tick:
            await coordinator.tick()
            try await settle()
            return
        case .hello:
            message = .hello(Self.hello(&input))
        case .update, .updateAgain:
            message = .update(update(&input, tasks: agents[slot]?.tasks ?? []))
        case .heartbeat:
            message = .heartbeat(Heartbeat(sequence: input.u64(), timestampNanos: input.u64(), isReply: input.u8() & 1 == 1))
        case .goodbye:
            message = .goodbye(Goodbye(reason: .normal, retryAfterMillis: 0, message: "bye"))
        case .rawFrame:
            var buffer = ByteBuffer(bytes: input.take(Int(input.u16() % 512)))
            do {
                guard let decoded = try WireCodec.decodeFrame(from: &buffer, maxPayloadBytes: FrameHeader.defaultMaxPayloadBytes),
                      let whole = try assemblers[slot].take(decoded) else { return }
                message = whole
            } catch {
                // The reader throws; the server ends the session.
                try await end(slot, reason: "\(error)")
                return
            }
        case .outOfPlace:
            switch input.u8() % 4 {
            case 0: message = .welcome(Welcome(clientID: "x", sessionID: 1, heartbeatIntervalMillis: 1, maxFrameBytes: 1,
                                              model: WireModelSpec(kind: .softmaxRegression, featureCount: 4, outputCount: 3)))
            case 1: message = .ack(Ack(taskID: input.u64(), status: .received, modelVersion: 0))
            case 2: message = .error(ErrorMessage(code: ErrorCode(rawValue: input.u16()), message: "agent error"))
            default: message = .task(TrainingTask(taskID: input.u64(), baseVersion: 0, kind: .train,
                                                  hyperparameters: Hyperparameters(learningRate: 0, batchSize: 0, epochs: 0, seed: 0, proximalMu: 0),
                                                  parameters: []))
            }
        }
        try await deliver(message, to: slot)
    }

    /// What `AgentServer.runSession`'s reader does with one inbound message.
    mutating func deliver(_ message: Message, to slot: Int) async throws(FuzzFailure) {
        if case .hello = message { assemblers[slot] = MessageAssembler(maxMessageBytes: 4_096) }  // a new connection
        guard let agent = agents[slot] else {
            guard case .hello(let hello) = message else { return }  // first message not hello: closed, coordinator untouched
            let clientID = "agent-\(slot)"
            let (stream, continuation) = AsyncStream<Message>.makeStream()
            switch await coordinator.fuzzAdmit(clientID: clientID, hello: hello, mailbox: continuation) {
            case .refuse, .over:
                continuation.finish()
            case .welcome(let welcome, let handle):
                try check(welcome.clientID == clientID, "welcome names \(welcome.clientID), the certificate says \(clientID)")
                let agent = Agent(clientID: clientID, handle: handle, stream: stream, continuation: continuation)
                agents[slot] = agent
                await coordinator.fuzzSessionStarted(handle)
            }
            try await settle()
            return
        }
        switch message {
        case .update(let update):
            await coordinator.fuzzHandleUpdate(update, from: agent.handle)
            let acked = try await settle(expectingAckFor: update.taskID, on: slot)
            try check(acked || agent.closed, "no ack for update of task \(update.taskID) from \(agent.clientID)")
        case .heartbeat:
            break  // answered by the session itself
        case .goodbye:
            try await end(slot, reason: "goodbye")
        case .error, .hello, .welcome, .task, .ack, .part:
            try await end(slot, reason: "unexpected \(message.type)")
        }
    }

    mutating func end(_ slot: Int, reason: String) async throws(FuzzFailure) {
        guard let agent = agents[slot] else { return }
        agents[slot] = nil
        agent.continuation.finish()
        await coordinator.fuzzSessionEnded(agent.handle, reason: reason)
        try await settle()
    }

    mutating func endAll() async {
        for slot in agents.indices { try? await end(slot, reason: "end of input") }
    }

    /// Lets due commits finish, then reads every mailbox; returns whether an ack for `taskID` reached `slot`.
    @discardableResult
    mutating func settle(expectingAckFor taskID: UInt64? = nil, on slot: Int? = nil) async throws(FuzzFailure) -> Bool {
        await coordinator.fuzzWaitUntilCommitted()
        var acked = false
        for index in agents.indices {
            guard let agent = agents[index] else { continue }
            let ackedHere = try await Self.drain(agent, taskID: index == slot ? taskID : nil)
            acked = acked || ackedHere
            if agent.closed {
                // The coordinator said goodbye or error: the session's writer ends it.
                agents[index] = nil
                await coordinator.fuzzSessionEnded(agent.handle, reason: "coordinator closed the session")
            }
        }
        return acked
    }

    static func drain(_ agent: Agent, taskID: UInt64?) async throws(FuzzFailure) -> Bool {
        if case .terminated = agent.continuation.yield(sentinel) { agent.closed = true }
        var acked = false
        while let message = await agent.mailbox.next() {
            if message == sentinel { return acked }
            if trace { print("\(agent.clientID) <- \(message)".prefix(160)) }
            if !agent.sawWelcome {
                guard case .welcome = message else { throw FuzzFailure("\(agent.clientID)'s first message is \(message.type), not welcome") }
                agent.sawWelcome = true
                continue
            }
            switch message {
            case .task(let task):
                agent.tasks.append(task)
                if agent.tasks.count > 8 { agent.tasks.removeFirst() }
            case .ack(let ack):
                if ack.taskID == taskID { acked = true }
            case .goodbye, .error:
                agent.closed = true
            default:
                break
            }
        }
        agent.closed = true
        return acked
    }

    static func hello(_ input: inout FuzzInput) -> Hello {
        let flags = input.u8()
        return Hello(agentVersion: "fuzz-\(flags)",
                     featureCount: flags & 1 == 0 ? UInt32(CoordinatorTarget.spec.featureCount) : input.u32(),
                     trainSampleCount: input.count64(), evalSampleCount: input.count64(), pendingUpdateCount: UInt32(input.u8()))
    }

    /// An update: for a task the agent was sent or any id, with its base version or any, counts small or
    /// huge, a delta of the model's shape (small or arbitrary values), none, or any names and shapes; or a
    /// report that it failed.
    func update(_ input: inout FuzzInput, tasks: [TrainingTask]) -> Update {
        let flags = input.u8()
        let task: TrainingTask? = flags & 0x80 == 0 && !tasks.isEmpty ? tasks[Int(input.u8()) % tasks.count] : nil
        let taskID = task?.taskID ?? input.u64()
        let baseVersion = flags & 0x40 == 0 ? (task?.baseVersion ?? 0) : input.u64()
        let sampleCount = input.count64()
        let trainLoss = input.f32()
        let evalSampleCount = input.count64()
        // Evaluation metrics in range half of the time, so evaluation rounds complete.
        let (evalLoss, evalAccuracy) = flags & 0x20 == 0 ? (Float(input.u8()) / 64, Float(input.u8()) / 255) : (input.f32(), input.f32())
        let trainMillis = input.u32()
        let delta: [WireTensor]
        switch flags & 0x03 {
        case 0: delta = ModelTensors.encode((0..<CoordinatorTarget.spec.parameterCount).map { _ in Float(Int8(bitPattern: input.u8())) / 64 },
                                            spec: CoordinatorTarget.spec)
        case 1: delta = ModelTensors.encode((0..<CoordinatorTarget.spec.parameterCount).map { _ in input.f32() }, spec: CoordinatorTarget.spec)
        case 2: delta = []
        default:
            delta = (0..<Int(input.u8() % 4)).map { _ in
                let names = ["weight", "bias", "w", ""]
                let name = names[Int(input.u8()) % names.count]
                let shape = (0..<Int(input.u8() % 3)).map { _ in Int(input.u8() % 6) }
                return WireTensor(name: name, shape: shape, values: (0..<shape.reduce(1, *)).map { _ in Float(Int8(bitPattern: input.u8())) / 64 })
            }
        }
        // Flag 0x10: a report that the task failed (option 0x8003), with whatever else the update carries.
        return Update(taskID: taskID, baseVersion: baseVersion, sampleCount: sampleCount, trainLoss: trainLoss,
                      evalSampleCount: evalSampleCount, evalLoss: evalLoss, evalAccuracy: evalAccuracy, trainMillis: trainMillis, delta: delta,
                      failure: flags & 0x10 == 0 ? nil : "trainer failed")
    }
}
