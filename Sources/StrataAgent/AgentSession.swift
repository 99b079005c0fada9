import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import StrataCore
import StrataData
import StrataStore
import StrataTransport
import StrataWire

/// One connection to the coordinator: hello/welcome, re-send what was not committed, then train the
/// tasks it sends, heartbeating throughout.
struct AgentSession: Sendable {
    let configuration: AgentConfiguration
    let samples: LoadedSamples
    let state: AgentStateStore
    let tlsContext: TLSContext
    let group: any EventLoopGroup
    let trainingPool: NIOThreadPool
    /// Trains and evaluates the tasks: built in, or the data owner's process.
    let trainer: any LocalTrainer
    let logger: Logger
    /// Jitter stream of `configuration.emulation`, seeded from its seed; shared by the connections of one agent
    /// so that a reconnection does not replay the same delays.
    let emulationRandom: NIOLockedValueBox<SeededGenerator>
    /// What lossy delta encodings left out, shared by the connections of one agent (`ErrorFeedback`).
    let feedback: NIOLockedValueBox<ErrorFeedback>
    /// Closes the session when a data refresh brings new rows (nil: never).
    var control: SessionControl? = nil

    enum Outcome: Sendable {
        case finished(String)
        case retryAfter(Duration, String)
    }

    enum SessionFailure: Error, CustomStringConvertible {
        case closedBeforeWelcome
        case unexpected(String)
        case peerError(ErrorMessage)
        case heartbeatTimeout(Duration)
        var description: String {
            switch self {
            case .closedBeforeWelcome: "connection closed before welcome"
            case .unexpected(let s): "unexpected message: \(s)"
            case .peerError(let e): "coordinator sent error \(e.code): \(e.message)"
            case .heartbeatTimeout(let d): "no heartbeat reply for \(d)"
            }
        }
    }

    typealias Connection = (channel: NIOAsyncChannel<Message, Message>, identity: EventLoopFuture<PeerIdentity>)

    /// One connection, until it ends. `onWelcome` is called once the coordinator admitted it.
    func run(onWelcome: @escaping @Sendable () -> Void = {}) async throws -> Outcome {
        let tlsContext = self.tlsContext
        let serverName = configuration.serverName ?? configuration.coordinatorHost
        let maxFrame = configuration.maxFrameBytes
        // Both follow from the welcome: messages in parts only once the coordinator said how large they get.
        let incomingMessageLimit = MessageSizeLimit(0)
        let coordinatorFrameLimit = MessageSizeLimit(0)
        // When the coordinator last sent a message or a part of one (a task in parts takes long on a slow link).
        let lastHeard = NIOLockedValueBox(ContinuousClock.now)
        let connection: Connection = try await ClientBootstrap(group: group)
            .connectTimeout(.milliseconds(configuration.connectTimeout.milliseconds))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connect(host: configuration.coordinatorHost, port: configuration.coordinatorPort) { channel in
                channel.eventLoop.makeCompletedFuture { () throws -> Connection in
                    let identity = try SecureChannel.addTLSHandlers(to: channel, context: tlsContext, serverHostname: serverName)
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(MessageDecoder(
                        maxPayloadBytes: maxFrame, offerFrameBuffer: PlaintextReadTarget.offer, messageLimit: incomingMessageLimit,
                        onPart: { lastHeard.withLockedValue { $0 = .now } })))
                    try channel.pipeline.syncOperations.addHandler(MessageFrameEncoder(peerFrameLimit: coordinatorFrameLimit))
                    return (try NIOAsyncChannel<Message, Message>(wrappingChannelSynchronously: channel), identity)
                }
            }
        control?.attach(connection.channel.channel)
        return try await connection.channel.executeThenClose { inbound, outbound in
            let identity = try await connection.identity.get()
            guard identity.role == .coordinator else { throw AgentError.wrongServerRole(identity.role.rawValue) }
            let pending = try await state.pending()
            var iterator = inbound.makeAsyncIterator()
            do {
                try await outbound.write(.hello(Hello(
                    agentVersion: configuration.agentVersion, featureCount: UInt32(samples.featureColumns.count),
                    trainSampleCount: UInt64(samples.train.count), evalSampleCount: UInt64(samples.test.count),
                    pendingUpdateCount: UInt32(pending.count),
                    featureNames: samples.featureColumns, capabilities: AgentCapabilities([.statistics, .preprocessing, .compressedDeltas, .compressedTasks, .messageParts]).union(trainer.capabilities))))
            } catch {
                // The coordinator may refuse (and close) before our hello: its error frame, or the TLS alert that
                // refused our certificate, says why better than the failed write.
                let reply: Result<Message?, any Error>
                do { reply = .success(try await iterator.next()) } catch let readError { reply = .failure(readError) }
                switch reply {
                case .success(.error(let refusal)?): throw AgentError.refused(refusal)
                case .failure(let tls as TLSError): throw tls
                default: throw error
                }
            }

            // A coordinator (or link) that accepts the connection but never answers must not hold the agent:
            // without a first reply in time the connection is closed and the agent reconnects with backoff.
            let answered = NIOLockedValueBox(false)
            let welcomeDeadline = connection.channel.channel.eventLoop.scheduleTask(in: .milliseconds(configuration.welcomeTimeout.milliseconds)) {
                if !answered.withLockedValue({ $0 }) { connection.channel.channel.close(promise: nil) }
            }
            let firstReply = try await iterator.next()
            answered.withLockedValue { $0 = true }
            welcomeDeadline.cancel()
            guard let first = firstReply else { throw SessionFailure.closedBeforeWelcome }
            let welcome: Welcome
            switch first {
            case .welcome(let w): welcome = w
            case .error(let error):
                switch error.code {
                case .notAuthorized, .incompatibleData, .evicted: throw AgentError.refused(error)
                default: throw SessionFailure.peerError(error)
                }
            case .goodbye(let goodbye):
                return outcome(of: goodbye)
            default:
                throw SessionFailure.unexpected("\(first.type) before welcome")
            }
            guard let spec = welcome.model.modelSpec else {
                throw AgentError.incompatibleModel("the coordinator describes a model that cannot exist (\(welcome.model.kind), \(welcome.model.featureCount) features, \(welcome.model.outputCount) outputs): upgrade or reconfigure the coordinator")
            }
            if let refusal = trainer.refusal(of: spec) { throw AgentError.incompatibleModel(refusal) }
            try checkCompatibility(spec, welcome: welcome)
            if let limit = welcome.maxMessageBytes {
                // Checked by checkCompatibility: the model's values fit in it, and it fits in one stored frame.
                incomingMessageLimit.set(Int(min(limit, UInt64(UInt32.max))))
                coordinatorFrameLimit.set(Int(welcome.maxFrameBytes))
            }
            // The rows as the model sees them; the preprocessing comes with the welcome or the first task.
            let prepared = NIOLockedValueBox(PreparedSamples(raw: samples))
            if let preprocessing = welcome.preprocessing {
                try prepared.withLockedValue { try $0.apply(preprocessing, spec: spec) }
            }
            onWelcome()
            var sessionLogger = logger
            sessionLogger[metadataKey: "client"] = "\(welcome.clientID)"
            let log = sessionLogger

            // Updates of another federation (the coordinator started a new state database) are never sent to this one.
            var resend = pending
            if let federation = welcome.federationID {
                let (previous, dropped) = try await state.adopt(federation: federation)
                if let previous, previous != federation {
                    feedback.withLockedValue { $0.reset() }
                    log.warning("the coordinator runs a new federation: updates of the previous one are dropped", metadata: [
                        "federation": "\(String(federation, radix: 16))", "previous": "\(String(previous, radix: 16))", "dropped": "\(dropped)"])
                    resend = []
                }
            }
            log.info("connected", metadata: ["session": "\(welcome.sessionID)", "resending": "\(resend.count)"])
            // Updates not acknowledged as committed in earlier sessions go first, unchanged.
            for update in resend {
                do {
                    try await outbound.write(try WireCodec.decodeStoredUpdate(update.payload))
                } catch let error as WireError {
                    log.error("a stored update cannot be read and is not sent", metadata: ["task": "\(update.taskID)", "error": "\(error)"])
                }
            }

            let (tasks, taskQueue) = AsyncStream<TrainingTask>.makeStream()
            // Evaluations are cheap and time-critical (a round waits for every agent): they never queue behind training.
            let (evaluations, evaluationQueue) = AsyncStream<TrainingTask>.makeStream()
            let heartbeatInterval = Duration.milliseconds(Int64(max(100, welcome.heartbeatIntervalMillis)))
            lastHeard.withLockedValue { $0 = .now }
            // A failing helper task records why and closes the channel, which ends the reader below.
            let helperFailure = NIOLockedValueBox<(any Error)?>(nil)
            let channel = connection.channel.channel
            @Sendable func failSession(_ error: any Error) {
                helperFailure.withLockedValue { if $0 == nil { $0 = error } }
                channel.close(promise: nil)
            }
            // One writer drains a mailbox: the worker, the heartbeat and the reader all send through it.
            let (mailbox, send) = AsyncStream<Message>.makeStream()
            return try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask {
                    do {
                        for await message in mailbox { try await outbound.write(message) }
                    } catch { failSession(error) }
                }
                // Worker: one task at a time, computed on the training thread, persisted before it is sent.
                let emulation = configuration.emulation
                let emulationRandom = self.emulationRandom
                group.addTask {
                    do {
                        for await task in tasks {
                            let started = ContinuousClock.now
                            let update = try await perform(task, spec: spec, encoding: welcome.updateEncoding ?? .float32, data: prepared.withLockedValue { $0 }, logger: log)
                            if emulation.isActive {
                                // Emulated slow client: the update is already persisted; wait here, never on a
                                // NIO or training thread. A lost connection meanwhile loses nothing (it is resent).
                                let compute = ContinuousClock.now - started
                                let delay = emulation.extraDelay(computeTime: compute, uniform: emulationRandom.withLockedValue { $0.nextUniform() })
                                log.debug("emulated slowdown", metadata: ["task": "\(task.taskID)", "computeMs": "\(compute.milliseconds)",
                                                                          "delayMs": "\(delay.milliseconds)"])
                                try await Task.sleep(for: delay)
                            }
                            send.yield(.update(update))
                        }
                    } catch is CancellationError {
                    } catch { failSession(error) }
                }
                group.addTask {
                    do {
                        for await task in evaluations {
                            send.yield(.update(try await perform(task, spec: spec, encoding: welcome.updateEncoding ?? .float32, data: prepared.withLockedValue { $0 }, logger: log)))
                        }
                    } catch { failSession(error) }
                }
                // Heartbeats: independent of training, so a long task never looks like a dead agent.
                group.addTask {
                    var sequence: UInt64 = 0
                    do {
                        while true {
                            try await Task.sleep(for: heartbeatInterval)
                            let silence = ContinuousClock.now - lastHeard.withLockedValue { $0 }
                            if silence > heartbeatInterval * 5 { throw SessionFailure.heartbeatTimeout(silence) }
                            sequence += 1
                            send.yield(.heartbeat(Heartbeat(sequence: sequence, timestampNanos: UInt64(DispatchTime.now().uptimeNanoseconds), isReply: false)))
                        }
                    } catch is CancellationError {
                    } catch { failSession(error) }
                }
                defer {
                    taskQueue.finish()
                    evaluationQueue.finish()
                    send.finish()
                    group.cancelAll()
                }
                // Reader, in this task: the inbound iterator is not Sendable.
                // The parameters of the last train task, in arrival order: a later one may come as a difference from them.
                var held: (taskID: UInt64, parameters: [Float])?
                do {
                    while let message = try await iterator.next() {
                        lastHeard.withLockedValue { $0 = .now }
                        switch message {
                        case .task(var task):
                            if task.kind == .train {
                                task = try resolveParameters(of: task, spec: spec, held: &held, keep: welcome.taskDifferences ?? true)
                            }
                            if let preprocessing = task.preprocessing {
                                try prepared.withLockedValue { try $0.apply(preprocessing, spec: spec) }
                                log.info("preprocessing received", metadata: ["features": "\(preprocessing.features.count)"])
                            }
                            // Evaluations and statistics are cheap and a round waits for them: never behind training.
                            if task.kind == .train { taskQueue.yield(task) } else { evaluationQueue.yield(task) }
                        case .ack(let ack):
                            try await handle(ack, logger: log)
                        case .heartbeat(let beat):
                            if !beat.isReply {
                                send.yield(.heartbeat(Heartbeat(sequence: beat.sequence, timestampNanos: beat.timestampNanos, isReply: true)))
                            }
                        case .goodbye(let goodbye):
                            return outcome(of: goodbye)
                        case .error(let error):
                            if error.code == .evicted || error.code == .notAuthorized { throw AgentError.refused(error) }
                            throw SessionFailure.peerError(error)
                        case .hello, .welcome, .update, .part:   // parts never leave the decoder
                            throw SessionFailure.unexpected("\(message.type)")
                        }
                    }
                } catch {
                    if let cause = helperFailure.withLockedValue({ $0 }) { throw cause }
                    throw error
                }
                if let cause = helperFailure.withLockedValue({ $0 }) { throw cause }
                throw ChannelError.eof
            }
        }
    }

    /// A train task with its parameters as float32 tensors: a difference from the last train task's parameters
    /// (task option 0x8002) is applied to them; `held` becomes this task's parameters when `keep` (the welcome
    /// did not rule differences out: option 5), else nothing is held (a model's worth of memory saved).
    private func resolveParameters(of task: TrainingTask, spec: ModelSpec, held: inout (taskID: UInt64, parameters: [Float])?,
                                   keep: Bool) throws -> TrainingTask {
        guard let referenced = task.referencedParameters else {
            // A task that does not match the model is refused when it is run; then nothing is held.
            held = keep ? (try? ModelTensors.decode(task.parameters, spec: spec)).map { (task.taskID, $0) } : nil
            return task
        }
        guard let reference = held, reference.taskID == referenced.referenceTaskID else {
            throw SessionFailure.unexpected("task \(task.taskID) is a difference from task \(referenced.referenceTaskID)'s parameters, which this session does not hold")
        }
        do {
            try ModelTensors.validateShapes(referenced.difference, spec: spec)
        } catch {
            throw SessionFailure.unexpected("task \(task.taskID)'s parameter difference does not match the model: \(error)")
        }
        let parameters = referenced.reconstruct(from: reference.parameters)
        held = (task.taskID, parameters)
        var resolved = task
        resolved.referencedParameters = nil
        resolved.parameters = ModelTensors.encode(parameters, spec: spec)
        return resolved
    }

    private func outcome(of goodbye: Goodbye) -> Outcome {
        if goodbye.reason == .replaced {
            logger.warning("the coordinator replaced this session with a newer one of the same identity: if this repeats, another agent may be using this certificate",
                           metadata: ["retryAfterMs": "\(goodbye.retryAfterMillis)"])
            // Being replaced is never a reason to stop for good, whatever delay came with it.
            return .retryAfter(.milliseconds(Int64(max(1000, goodbye.retryAfterMillis))), goodbye.message)
        }
        if goodbye.retryAfterMillis > 0 {
            return .retryAfter(.milliseconds(Int64(goodbye.retryAfterMillis)), goodbye.message)
        }
        return .finished(goodbye.message)
    }

    private func checkCompatibility(_ spec: ModelSpec, welcome: Welcome) throws {
        // The welcome is untrusted too: a model larger than one message can carry (a frame, or the parts the
        // welcome announced, at most 4 GiB) is refused before anything is allocated for it.
        // (An MLP's widths are bounded by the wire, so its parameter count cannot overflow.)
        let valueLimit = welcome.maxMessageBytes.map { Int(min($0, UInt64(UInt32.max))) } ?? configuration.maxFrameBytes
        let fits = spec.kind == .mlp || spec.kind == .custom ? spec.parameterCount <= valueLimit / 4
            : spec.outputCount <= valueLimit / 4 / max(1, spec.featureCount + 1)
        guard spec.outputCount >= 1, fits else {
            throw AgentError.incompatibleModel(welcome.maxMessageBytes == nil
                ? "the welcome announces a model (\(spec.summary)) that no task frame of at most \(configuration.maxFrameBytes) bytes can carry"
                : "the welcome announces a model (\(spec.summary)) larger than the \(valueLimit) bytes its messages may have")
        }
        guard spec.featureCount == samples.featureColumns.count else {
            throw AgentError.incompatibleModel("the federation's model has \(spec.featureCount) features but the data has \(samples.featureColumns.count)")
        }
        // Text labels are numbered later, through the federation's vocabulary (PreparedSamples.apply).
        if spec.isClassifier, !samples.hasUnmappedLabels {
            for (dataset, offset) in [(samples.train, 0), (samples.test, samples.train.count)] {
                if let bad = dataset.labels.firstIndex(where: { $0 < 0 || $0 >= Float(spec.outputCount) || $0 != $0.rounded() }) {
                    throw DataSourceError.labelOutOfRange(row: Int64(offset + bad + 1), value: dataset.labels[bad], classCount: spec.outputCount)
                }
            }
        }
    }

    private func handle(_ ack: Ack, logger: Logger) async throws {
        switch ack.status {
        case .received:
            logger.debug("update received by coordinator", metadata: ["task": "\(ack.taskID)"])
        case .committed:
            try await state.acknowledge(taskID: Int64(bitPattern: ack.taskID), status: "committed", modelVersion: Int64(bitPattern: ack.modelVersion), now: Date().timeIntervalSince1970)
            logger.debug("update committed", metadata: ["task": "\(ack.taskID)", "version": "\(ack.modelVersion)"])
        case .refused:
            try await state.acknowledge(taskID: Int64(bitPattern: ack.taskID), status: "refused", modelVersion: Int64(bitPattern: ack.modelVersion), now: Date().timeIntervalSince1970)
            logger.error("update refused by coordinator", metadata: ["task": "\(ack.taskID)", "code": "\(ack.code)", "reason": "\(ack.reason)"])
        }
    }

    /// Evaluates the task's model, trains on it (train tasks), and persists the update before returning it.
    private func perform(_ task: TrainingTask, spec: ModelSpec, encoding: DeltaEncoding, data: PreparedSamples, logger: Logger) async throws -> Update {
        if task.kind == .statistics {
            let summary = data.summary()
            logger.info("statistics sent", metadata: ["task": "\(task.taskID)", "rows": "\(data.raw.train.count)"])
            return Update(taskID: task.taskID, baseVersion: task.baseVersion, sampleCount: 0, trainLoss: 0,
                          evalSampleCount: UInt64(data.raw.test.count), evalLoss: 0, evalAccuracy: 0, trainMillis: 0, delta: [],
                          statistics: WireDataStatistics(summary))
        }
        let input = TrainerInput(spec: spec, samples: try data.ready(), generation: data.generation,
                                 target: data.preprocessing?.target ?? .identity, labels: data.preprocessing?.labels ?? [])
        let state = self.state
        let trainer = self.trainer
        let feedback = self.feedback
        let update: Update = try await trainingPool.runIfActive {
            let started = ContinuousClock.now
            let base = try ModelTensors.decode(task.parameters, spec: spec)
            let test = UInt64(input.samples.test.count)
            let update: Update
            do {
                if task.kind == .train {
                    let trained = try trainer.train(task, base: base, input: input)
                    var difference = trained.parameters
                    for i in difference.indices { difference[i] -= base[i] }
                    // Compressed as the welcome asked, with what earlier compressions left out; float32 otherwise.
                    let compressed = feedback.withLockedValue { $0.compress(difference, spec: spec, as: encoding) }
                    update = Update(taskID: task.taskID, baseVersion: task.baseVersion, sampleCount: UInt64(input.samples.train.count),
                                    trainLoss: trained.trainLoss, evalSampleCount: test, evalLoss: trained.before.loss,
                                    evalAccuracy: trained.before.accuracy, trainMillis: UInt32(clamping: (ContinuousClock.now - started).milliseconds),
                                    delta: compressed == nil ? ModelTensors.encode(difference, spec: spec) : [], compressedDelta: compressed)
                } else {
                    let evaluated = try trainer.evaluate(task, base: base, input: input)
                    update = Update(taskID: task.taskID, baseVersion: task.baseVersion, sampleCount: 0, trainLoss: 0, evalSampleCount: test,
                                    evalLoss: evaluated.evaluation.loss, evalAccuracy: evaluated.evaluation.accuracy,
                                    trainMillis: UInt32(clamping: (ContinuousClock.now - started).milliseconds), delta: [],
                                    evaluation: evaluated.statistics,
                                    evalLossSquares: test > 0 ? evaluated.evaluation.lossSquares : nil)
                }
            } catch let failure as TrainerFailure {
                // Nothing to store: the coordinator learns why and hands out another task.
                return Update.failed(task.taskID, baseVersion: task.baseVersion, reason: failure.reason)
            }
            if task.kind == .train {
                // Written before it is sent; deleted only on a committed (or refused) ack.
                // The frame's pieces (the tensors' own buffers among them) go into the stored blob as they are.
                let pieces = WireCodec.encodePieces(.update(update))
                try state.savePendingNow(taskID: Int64(bitPattern: task.taskID), baseVersion: Int64(bitPattern: task.baseVersion),
                                         createdAt: Date().timeIntervalSince1970, byteCount: pieces.reduce(0) { $0 + $1.readableBytes }) { write in
                    for piece in pieces { try piece.withUnsafeReadableBytes { try write($0) } }
                }
            }
            return update
        }
        if let reason = update.failure {
            logger.error("task failed; reported to the coordinator", metadata: ["task": "\(task.taskID)", "kind": "\(task.kind)", "reason": "\(reason)"])
            return update
        }
        logger.debug("task done", metadata: ["task": "\(task.taskID)", "base": "\(task.baseVersion)", "loss": "\(update.trainLoss)", "ms": "\(update.trainMillis)"])
        return update
    }
}
