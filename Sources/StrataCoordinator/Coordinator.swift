import Foundation
import Logging
import StrataCore
import StrataStore
import StrataWire

/// The federation's state machine: the current model, the open buffer, the tasks handed out and the
/// connected agents. Network sessions call into it; it persists through `CoordinatorStore`.
///
/// Reentrancy: every `await` on the store happens before a method touches the buffer, and the buffer
/// is re-checked after it, so two copies of one update can never both be folded in.
public actor Coordinator {
    public let configuration: CoordinatorConfiguration
    let store: CoordinatorStore
    let logger: Logger
    let onEvent: @Sendable (CoordinatorEvent) -> Void

    private var version: Int64 = 0
    private var parameters: [Float] = []
    /// The current model serialized once per version and shared by every task that carries it.
    private var modelTensors: [WireTensor] = []
    private var optimizerState: ServerOptimizerState
    private var accumulator: WeightedAccumulator
    private var buffered: [CommittedUpdateRecord] = []
    private var bufferedTaskIDs: Set<Int64> = []
    private var committing = false
    private var nextTaskID: Int64 = 1
    private var tasks: [Int64: TaskRecord] = [:]
    private var outstandingTraining: [String: Int64] = [:]
    private var sessions: [String: AgentSessionHandle] = [:]
    private var nextSessionID: UInt64 = 1
    private var evaluations: [Int64: EvaluationRound] = [:]
    private var lastEvaluation: EvaluationResult?
    private var bestAccuracy: Double?
    private var ready = false
    private var stopReason: StopReason?
    private var stopDetail: String?
    private var stopWaiters: [CheckedContinuation<Void, Never>] = []
    private let startedAt = ContinuousClock.now

    struct EvaluationRound {
        var expected: Set<String>
        var results: [String: (samples: Int64, accuracy: Double, loss: Double)] = [:]
        var startedAt: ContinuousClock.Instant
    }

    public init(configuration: CoordinatorConfiguration, store: CoordinatorStore, logger: Logger,
                onEvent: @escaping @Sendable (CoordinatorEvent) -> Void = { _ in }) {
        self.configuration = configuration
        self.store = store
        self.logger = logger
        self.onEvent = onEvent
        self.optimizerState = ServerOptimizerState(parameterCount: configuration.model.parameterCount)
        self.accumulator = WeightedAccumulator(parameterCount: configuration.model.parameterCount)
    }

    // MARK: Lifecycle

    /// Restores the last committed state. No agent is admitted before this returns.
    public func restore() async throws {
        let spec = configuration.model
        let state = try await store.restoreOrInitialize(spec: spec, initialParameters: spec.initialParameters(), now: Self.now())
        version = state.version
        parameters = state.parameters
        modelTensors = ModelTensors.encode(parameters, spec: spec)
        nextTaskID = state.nextTaskID
        ready = true
        logger.info("state restored", metadata: ["version": "\(version)", "committedUpdates": "\(state.committedUpdateCount)", "state": "\(store.path)"])
        onEvent(.restored(version: version, committedUpdates: state.committedUpdateCount))
        if let limit = configuration.stop.maxVersions, version >= limit {
            requestStop(.maxVersions, detail: "the state already holds version \(version)")
        }
    }

    public var isReady: Bool { ready && stopReason == nil }
    public var currentVersion: Int64 { version }

    /// Suspends until the federation stops (target, limit, signal or failure).
    public func waitUntilStopped() async {
        if stopReason != nil { return }
        await withCheckedContinuation { stopWaiters.append($0) }
    }

    public func requestStop(_ reason: StopReason, detail: String? = nil) {
        guard stopReason == nil else { return }
        stopReason = reason
        stopDetail = detail
        logger.notice("stopping", metadata: ["reason": "\(reason.rawValue)", "version": "\(version)"])
        let goodbye: Goodbye
        switch reason {
        case .signal:
            goodbye = Goodbye(reason: .shuttingDown, retryAfterMillis: UInt32(configuration.drainRetryAfter.milliseconds),
                              message: "coordinator is shutting down; uncommitted updates will be accepted after it restarts")
        case .failure:
            goodbye = Goodbye(reason: .shuttingDown, retryAfterMillis: UInt32(configuration.drainRetryAfter.milliseconds),
                              message: "coordinator stopped on an error: \(detail ?? "")")
        case .targetReached, .maxVersions, .maxDuration:
            goodbye = Goodbye(reason: reason == .targetReached ? .targetReached : .normal, retryAfterMillis: 0,
                              message: "training finished (\(reason.rawValue)) at version \(version)")
        }
        for session in sessions.values { session.finish(with: .goodbye(goodbye)) }
        sessions.removeAll()
        // Results still in flight describe versions after the decision; the summary keeps the deciding one.
        evaluations.removeAll()
        let waiters = stopWaiters
        stopWaiters.removeAll()
        for waiter in waiters { waiter.resume() }
    }

    /// The summary, computed from the durable state.
    public func summary() async -> CoordinatorSummary {
        let totals = try? await store.summary()
        let target = configuration.stop.targetAccuracy
        return CoordinatorSummary(
            reason: stopReason ?? .signal,
            targetAccuracy: target,
            targetReached: target.map { t in (bestAccuracy ?? 0) >= t } ?? false,
            finalVersion: version,
            lastEvaluation: lastEvaluation,
            bestAccuracy: bestAccuracy,
            updatesAccepted: totals?.committedUpdates ?? 0,
            updatesRefused: totals?.refusedUpdates ?? 0,
            wallSeconds: (ContinuousClock.now - startedAt).seconds,
            detail: stopDetail)
    }

    public func checkDeadline() {
        if let limit = configuration.stop.maxDuration, ContinuousClock.now - startedAt >= limit {
            requestStop(.maxDuration, detail: "ran for \(limit)")
        }
    }

    // MARK: Sessions

    public enum Admission: Sendable {
        case welcome(Welcome, AgentSessionHandle)
        case refuse(ErrorMessage)
    }

    func admit(clientID: String, hello: Hello, mailbox: AsyncStream<Message>.Continuation) async -> Admission {
        guard ready else { return .refuse(ErrorMessage(code: .notReady, message: "coordinator is restoring its state; retry shortly")) }
        guard stopReason == nil else { return .refuse(ErrorMessage(code: .shuttingDown, message: "coordinator is stopping")) }
        guard Int(hello.featureCount) == configuration.model.featureCount else {
            return .refuse(ErrorMessage(code: .incompatibleData, message:
                "this federation's model has \(configuration.model.featureCount) features but your data has \(hello.featureCount): select matching columns (--feature-columns or --query)"))
        }
        do {
            try await store.recordSession(clientID: clientID, agentVersion: hello.agentVersion,
                                          trainSamples: Int64(hello.trainSampleCount), evalSamples: Int64(hello.evalSampleCount), now: Self.now())
        } catch {
            logger.error("cannot record session", metadata: ["client": "\(clientID)", "error": "\(error)"])
            return .refuse(ErrorMessage(code: .internalError, message: "coordinator cannot write its state"))
        }
        guard stopReason == nil else { return .refuse(ErrorMessage(code: .shuttingDown, message: "coordinator is stopping")) }
        // A newer session of the same client replaces the old one (the old TCP connection is probably dead).
        if let old = sessions[clientID] {
            old.finish(with: .goodbye(Goodbye(reason: .normal, retryAfterMillis: 0, message: "replaced by a newer session of the same client")))
        }
        let session = AgentSessionHandle(clientID: clientID, sessionID: nextSessionID, mailbox: mailbox)
        nextSessionID += 1
        sessions[clientID] = session
        outstandingTraining[clientID] = nil
        logger.info("agent joined", metadata: ["client": "\(clientID)", "session": "\(session.sessionID)",
                                                "trainSamples": "\(hello.trainSampleCount)", "pending": "\(hello.pendingUpdateCount)"])
        let welcome = Welcome(clientID: clientID, sessionID: session.sessionID,
                              heartbeatIntervalMillis: UInt32(configuration.heartbeatInterval.milliseconds),
                              maxFrameBytes: UInt32(configuration.maxFrameBytes), model: WireModelSpec(configuration.model))
        return .welcome(welcome, session)
    }

    /// Called after `welcome` was queued: hand the agent its first task.
    func sessionStarted(_ session: AgentSessionHandle) async {
        await dispatchTraining(to: session)
    }

    func sessionEnded(_ session: AgentSessionHandle, reason: String) {
        guard sessions[session.clientID] === session else { return }
        sessions[session.clientID] = nil
        outstandingTraining[session.clientID] = nil
        logger.info("agent left", metadata: ["client": "\(session.clientID)", "session": "\(session.sessionID)", "reason": "\(reason)"])
        for (roundVersion, var round) in evaluations where round.expected.remove(session.clientID) != nil {
            evaluations[roundVersion] = round
            finishEvaluationIfComplete(version: roundVersion)
        }
    }

    // MARK: Tasks

    private func allocateTask(for clientID: String, kind: TaskKind) async -> TaskRecord? {
        let record = TaskRecord(id: nextTaskID, clientID: clientID, baseVersion: version, kind: Int(kind.rawValue), dispatchedAt: Self.now())
        nextTaskID += 1
        do {
            try await store.recordTask(record)  // durable before it is sent
        } catch {
            fail("cannot record a task: \(error)")
            return nil
        }
        tasks[record.id] = record
        return record
    }

    private func dispatchTraining(to session: AgentSessionHandle) async {
        guard stopReason == nil, sessions[session.clientID] === session else { return }
        let tensors = modelTensors
        guard let record = await allocateTask(for: session.clientID, kind: .train) else { return }
        guard sessions[session.clientID] === session, stopReason == nil else { return }
        outstandingTraining[session.clientID] = record.id
        let training = configuration.training
        session.send(.task(TrainingTask(
            taskID: UInt64(record.id), baseVersion: UInt64(record.baseVersion), kind: .train,
            hyperparameters: Hyperparameters(learningRate: training.learningRate, batchSize: UInt32(training.batchSize),
                                             epochs: UInt32(training.epochs), seed: training.seed &+ UInt64(record.id),
                                             proximalMu: training.proximalMu),
            parameters: tensors)))
    }

    // MARK: Updates

    func handleUpdate(_ update: Update, from session: AgentSessionHandle) async {
        let taskID = Int64(bitPattern: update.taskID)
        // Reads first (they may suspend), then the buffer is touched without suspending.
        var task = tasks[taskID]
        if task == nil { task = try? await store.task(id: taskID) }
        guard let task else {
            await refuse(update, from: session, code: .unknownTask, reason: "task \(update.taskID) was never handed out by this coordinator")
            return
        }
        guard task.clientID == session.clientID else {
            await refuse(update, from: session, code: .wrongClient, reason: "task \(update.taskID) belongs to another client")
            return
        }
        if task.kind == Int(TaskKind.evaluate.rawValue) {
            handleEvaluation(update, task: task, from: session)
            return
        }
        if !bufferedTaskIDs.contains(taskID), let committedIn = try? await store.committedVersion(forTask: taskID) {
            // Sent again after it was committed (lost ack, reconnect, agent restart): ack again, never fold twice.
            session.send(.ack(Ack(taskID: update.taskID, status: .committed, modelVersion: UInt64(committedIn))))
            return
        }
        if bufferedTaskIDs.contains(taskID) {
            session.send(.ack(Ack(taskID: update.taskID, status: .received, modelVersion: UInt64(version))))
            return
        }
        let isOutstanding = outstandingTraining[session.clientID] == taskID
        if isOutstanding { outstandingTraining[session.clientID] = nil }

        switch validate(update, task: task) {
        case .failure(let refusal):
            await refuse(update, from: session, code: refusal.code, reason: refusal.message)
        case .success(let (delta, staleness)):
            let factor = configuration.aggregation.staleness.factor(staleness: Int(staleness))
            let weight = Float(Double(update.sampleCount) * factor)
            do {
                try accumulator.add(delta, weight: weight)
            } catch {
                await refuse(update, from: session, code: .invalidUpdate, reason: "cannot aggregate: \(error)")
                break
            }
            bufferedTaskIDs.insert(taskID)
            buffered.append(CommittedUpdateRecord(
                taskID: taskID, clientID: session.clientID, version: 0, baseVersion: task.baseVersion,
                sampleCount: Int64(update.sampleCount), staleness: staleness, weight: Double(weight),
                trainLoss: Double(update.trainLoss), receivedAt: Self.now()))
            session.send(.ack(Ack(taskID: update.taskID, status: .received, modelVersion: UInt64(version))))
            logger.debug("update folded", metadata: ["client": "\(session.clientID)", "task": "\(taskID)", "staleness": "\(staleness)", "weight": "\(weight)"])
        }
        if isOutstanding { await dispatchTraining(to: session) }
        if buffered.count >= configuration.aggregation.bufferSize { await commitFullBuffers() }
        checkDeadline()
    }

    private func validate(_ update: Update, task: TaskRecord) -> Result<([Float], Int64), ErrorMessage> {
        let spec = configuration.model
        guard update.baseVersion == UInt64(task.baseVersion) else {
            return .failure(ErrorMessage(code: .invalidUpdate, message: "base version \(update.baseVersion) does not match task \(task.id)'s version \(task.baseVersion)"))
        }
        guard update.sampleCount > 0 else {
            return .failure(ErrorMessage(code: .invalidUpdate, message: "sample count is 0"))
        }
        let staleness = version - task.baseVersion
        guard staleness <= configuration.aggregation.maxStaleness else {
            return .failure(ErrorMessage(code: .tooStale, message: "based on version \(task.baseVersion), \(staleness) versions behind (limit \(configuration.aggregation.maxStaleness))"))
        }
        let delta: [Float]
        do {
            delta = try ModelTensors.decode(update.delta, spec: spec)
        } catch {
            return .failure(ErrorMessage(code: .shapeMismatch, message: "\(error)"))
        }
        do {
            try UpdateValidation.validate(delta: delta, expectedCount: spec.parameterCount, maxNorm: configuration.aggregation.maxUpdateNorm)
        } catch let error as StrataCoreError {
            switch error {
            case .nonFinite(let index): return .failure(ErrorMessage(code: .nonFiniteValue, message: "delta value at flat index \(index) is not finite"))
            case .shapeMismatch(let expected, let actual): return .failure(ErrorMessage(code: .shapeMismatch, message: "expected \(expected) values, got \(actual)"))
            case .invalidArgument(let text): return .failure(ErrorMessage(code: .normTooLarge, message: text))
            }
        } catch {
            return .failure(ErrorMessage(code: .invalidUpdate, message: "\(error)"))
        }
        return .success((delta, staleness))
    }

    private func refuse(_ update: Update, from session: AgentSessionHandle, code: ErrorCode, reason: String) async {
        logger.warning("update refused", metadata: ["client": "\(session.clientID)", "task": "\(update.taskID)", "code": "\(code)", "reason": "\(reason)"])
        session.send(.ack(Ack(taskID: update.taskID, status: .refused, modelVersion: UInt64(version), code: code, reason: reason)))
        do {
            try await store.recordRefusal(taskID: Int64(bitPattern: update.taskID), clientID: session.clientID, code: Int(code.rawValue), reason: reason, now: Self.now())
        } catch {
            logger.error("cannot record a refusal", metadata: ["error": "\(error)"])
        }
    }

    /// Steps the model once per full buffer. The new version, the ids of the updates it contains and
    /// the client counters are one transaction; acks go out only after it is durable.
    private func commitFullBuffers() async {
        guard !committing else { return }
        committing = true
        defer { committing = false }
        while buffered.count >= configuration.aggregation.bufferSize, stopReason == nil {
            let batch = buffered
            let mean = accumulator.weightedMean()
            buffered.removeAll()
            accumulator.reset()
            var next = parameters
            AggregationStep.apply(model: &next, meanDelta: mean, optimizer: configuration.aggregation.serverOptimizer, state: &optimizerState)
            let newVersion = version + 1
            let records = batch.map { record -> CommittedUpdateRecord in
                var record = record
                record.version = newVersion
                return record
            }
            let meanStaleness = batch.isEmpty ? 0 : Double(batch.reduce(0) { $0 + $1.staleness }) / Double(batch.count)
            let versionRecord = ModelVersionRecord(
                version: newVersion, createdAt: Self.now(), parameters: FloatBlob.encode(next),
                updateCount: batch.count, totalWeight: batch.reduce(0) { $0 + $1.weight }, meanStaleness: meanStaleness, trigger: "buffer")
            do {
                try await store.commitAggregation(versionRecord, updates: records)
            } catch {
                // Fail-stop: nothing of this buffer was acknowledged as committed, so agents keep and re-send it.
                fail("cannot commit version \(newVersion): \(error)")
                return
            }
            version = newVersion
            parameters = next
            modelTensors = ModelTensors.encode(parameters, spec: configuration.model)
            for record in records {
                bufferedTaskIDs.remove(record.taskID)
                sessions[record.clientID]?.send(.ack(Ack(taskID: UInt64(record.taskID), status: .committed, modelVersion: UInt64(newVersion))))
            }
            logger.info("version committed", metadata: ["version": "\(newVersion)", "updates": "\(records.count)", "meanStaleness": "\(meanStaleness)"])
            onEvent(.versionCommitted(version: newVersion, updates: records.count, meanStaleness: meanStaleness))
            if let limit = configuration.stop.maxVersions, newVersion >= limit {
                requestStop(.maxVersions, detail: "reached version \(newVersion)")
            } else if configuration.evaluateEvery > 0, newVersion % Int64(configuration.evaluateEvery) == 0 {
                await startEvaluation()
            }
        }
    }

    private func fail(_ detail: String) {
        logger.critical("\(detail)")
        requestStop(.failure, detail: detail)
    }

    // MARK: Evaluation

    private func startEvaluation() async {
        let evaluatedVersion = version
        let targets = Array(sessions.values)
        guard !targets.isEmpty, evaluations[evaluatedVersion] == nil else { return }
        evaluations[evaluatedVersion] = EvaluationRound(expected: Set(targets.map(\.clientID)), startedAt: .now)
        let tensors = modelTensors
        for session in targets {
            guard let record = await allocateTask(for: session.clientID, kind: .evaluate) else { return }
            session.send(.task(TrainingTask(
                taskID: UInt64(record.id), baseVersion: UInt64(evaluatedVersion), kind: .evaluate,
                hyperparameters: Hyperparameters(learningRate: 0, batchSize: 0, epochs: 0, seed: 0, proximalMu: 0),
                parameters: tensors)))
        }
        let timeout = configuration.evaluationTimeout
        Task { [weak self] in
            try? await Task.sleep(for: timeout)
            await self?.closeEvaluation(version: evaluatedVersion)
        }
    }

    private func handleEvaluation(_ update: Update, task: TaskRecord, from session: AgentSessionHandle) {
        session.send(.ack(Ack(taskID: update.taskID, status: .committed, modelVersion: UInt64(task.baseVersion))))
        guard update.evalSampleCount > 0, update.evalAccuracy.isFinite, update.evalLoss.isFinite,
              (0...1).contains(update.evalAccuracy) else { return }
        let record = EvaluationRecord(taskID: task.id, clientID: session.clientID, modelVersion: task.baseVersion,
                                      sampleCount: Int64(update.evalSampleCount), loss: Double(update.evalLoss),
                                      accuracy: Double(update.evalAccuracy), at: Self.now())
        let store = self.store
        Task { try? await store.recordEvaluation(record) }
        guard var round = evaluations[task.baseVersion] else { return }
        round.results[session.clientID] = (Int64(update.evalSampleCount), Double(update.evalAccuracy), Double(update.evalLoss))
        evaluations[task.baseVersion] = round
        finishEvaluationIfComplete(version: task.baseVersion)
    }

    private func finishEvaluationIfComplete(version evaluated: Int64) {
        guard let round = evaluations[evaluated], round.expected.isSubset(of: round.results.keys) else { return }
        closeEvaluation(version: evaluated)
    }

    private func closeEvaluation(version evaluated: Int64) {
        guard let round = evaluations.removeValue(forKey: evaluated) else { return }
        let samples = round.results.values.reduce(Int64(0)) { $0 + $1.samples }
        guard samples > 0 else { return }
        let accuracy = round.results.values.reduce(0.0) { $0 + Double($1.samples) * $1.accuracy } / Double(samples)
        let loss = round.results.values.reduce(0.0) { $0 + Double($1.samples) * $1.loss } / Double(samples)
        let result = EvaluationResult(version: evaluated, accuracy: accuracy, loss: loss, samples: samples,
                                      clients: round.results.count, expectedClients: max(round.expected.count, round.results.count),
                                      elapsedSeconds: (ContinuousClock.now - startedAt).seconds)
        lastEvaluation = result
        bestAccuracy = max(bestAccuracy ?? 0, accuracy)
        onEvent(.evaluated(result))
        if let target = configuration.stop.targetAccuracy, accuracy >= target, stopReason == nil {
            requestStop(.targetReached, detail: String(format: "version %lld reached accuracy %.4f (target %.4f)", evaluated, accuracy, target))
        }
    }

    static func now() -> Double { Date().timeIntervalSince1970 }
}
