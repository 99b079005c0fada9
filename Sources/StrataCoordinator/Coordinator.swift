import Foundation
import Logging
import NIOConcurrencyHelpers
import StrataCore
import StrataStore
import StrataWire

/// The federation's state machine around one aggregation rule: the tasks handed out, the connected agents,
/// their latency tiers, the updates folded but not yet committed. Network sessions call into it; the rule
/// (pure) decides what to train and when to step; the store makes each step durable before any agent is
/// told "committed".
///
/// Reentrancy: state is changed only between suspension points, and everything read before an `await`
/// is re-checked after it.
public actor Coordinator {
    public let configuration: CoordinatorConfiguration
    let store: CoordinatorStore
    let logger: Logger
    let onEvent: @Sendable (CoordinatorEvent) -> Void
    let metrics: CoordinatorMetrics

    var rule: any AggregationRule
    var tiers: TierAssigner
    var health: FailureDetector
    /// Set on SIGTERM: no new tasks; open buffers are flushed or abandoned (`drainPolicy`).
    var draining = false
    /// Wall-clock time (seconds since 1970) at `startedAt`, to store monotonic times as dates.
    let wallStart = Date().timeIntervalSince1970
    var profiles: [String: LatencyProfile] = [:]
    /// Serialized models, shared by every task that carries the same lane version.
    var tensorCache: [Int: (version: Int64, tensors: [WireTensor])] = [:]

    /// Tasks handed out and not yet answered (train tasks until committed or refused).
    var tasks: [Int64: TaskRecord] = [:]
    /// This run's id (the state database's): every welcome carries it, so agents never resend an update of
    /// another run to this one.
    var federationID: UInt64 = 0
    /// What every session was told when the federation stopped; an agent arriving later is told the same.
    var finalGoodbye: Goodbye?
    /// Tasks their agents reported failed in this run (the store keeps them too): never answered later.
    var failedTasks: Set<Int64> = []
    /// Updates the rule folded that no durable version holds yet.
    var inFlight: [Int64: InFlightUpdate] = [:]
    /// Outcomes produced by the rule, persisted strictly in order.
    var outcomeQueue: [AggregationOutcome] = []
    var committing = false
    var commitWaiters: [CheckedContinuation<Void, Never>] = []
    var nextTaskID: Int64 = 1
    /// Client → its outstanding training task (0 while a task is being prepared).
    var outstandingTraining: [String: Int64] = [:]
    var sessions: [String: AgentSessionHandle] = [:]
    /// `sampleWeightCap()` until the set of sessions changes.
    var weightCapCache: Int64?
    var nextSessionID: UInt64 = 1
    /// When training started in this process: the clock of tier formation's timeout.
    var firstSessionAt: ContinuousClock.Instant?
    var lastRetier: ContinuousClock.Instant = .now
    /// When the failure detector last looked at every session (`tick` does it at most every `healthCheckInterval`).
    var lastHealthCheck: ContinuousClock.Instant?

    var evaluations: [Int64: EvaluationRound] = [:]
    var lastEvaluatedVersion: Int64 = -1
    var lastEvaluationStart: ContinuousClock.Instant?
    /// The latest durable global model's version and when it was created (seconds since start). Not its
    /// parameters: holding them would keep a second model alive from each step until its commit ends
    /// (`committedParameters` finds them when an evaluation needs them).
    var lastCommitted: (version: Int64, elapsed: Double) = (0, 0)
    var lastEvaluation: EvaluationResult?
    /// The best accuracy of a counted evaluation (restored with the best version when the target metric is accuracy).
    var bestAccuracy: Double?
    var timeToTarget: Double?
    /// Model bytes received and sent (`Traffic`), and as they stood when the target was first reached.
    var traffic = Traffic()
    var trafficAtTarget: Traffic?
    /// `traffic` when the latest committed version was made: an evaluation of it reports what reaching it cost.
    var lastCommittedTraffic = Traffic()
    /// Per client: the parameters its agent holds from its last train task (`--task-encoding`, Coordinator+Downlink).
    var heldParameters: [String: HeldParameters] = [:]
    /// When each client's last train task was dispatched (pacing, `--min-task-interval`).
    var lastTrainDispatch: [String: ContinuousClock.Instant] = [:]
    /// Target, patience, limits and the best version's score: the pure state machine that decides the end.
    var progress: RunProgress
    /// The best version's record as stored (nil until an evaluation counted), for status and export.
    var bestRecord: BestVersionRecord?
    /// Evaluation rounds and best versions are written in order, one after the other.
    var evaluationWrites: Task<Void, Never>?
    /// A quorum of `minClients` agents was connected once in this run (durable): training goes on without it.
    var trainingStarted = false
    var loggedWaitingForClients = false
    var belowMinClients = false
    /// Clients an operator evicted: their certificates are refused until re-admitted.
    var evicted: [String: StoredEviction] = [:]
    /// The federation's preprocessing once fixed (nil while gathering statistics, or when it has none).
    var preprocessing: Preprocessing?
    /// Whether training waits for a preprocessing (the statistics phase); false once fixed or when off.
    var gatheringStatistics = false
    var statistics = StatisticsPhase()
    /// Sessions that already received the preprocessing (in welcome or a task).
    var preprocessingSent: Set<UInt64> = []
    /// Updates committed per tier (lane) per second, for the admin API and metrics.
    var laneRates: [Int: RateWindow] = [:]
    /// The cross-tier weights of the latest combination (provenance of the latest global version).
    var lastLaneWeights: [Double] = []
    /// The divergence guard's decisions (pure), and the parameters of the version it counts as the best
    /// (one model copy; the store may have pruned them).
    var divergence: DivergenceGuard
    var bestModel: (version: Int64, parameters: [Float])?
    /// After a restart: the restored model, evaluated once `--min-evaluation-clients` agents are connected,
    /// so that the divergence guard knows its loss (its record of the best lives in memory only).
    var baselineEvaluation: (version: Int64, parameters: [Float])?

    var ready = false
    var stopReason: StopReason?
    var stopDetail: String?
    var stopWaiters: [CheckedContinuation<Void, Never>] = []
    let startedAt = ContinuousClock.now

    struct InFlightUpdate {
        var taskID: Int64
        var clientID: String
        var lane: Int
        var baseVersion: Int64
        var sampleCount: Int64
        var trainLoss: Double
        var receivedAt: Double
        var latency: Double?
    }

    struct EvaluationRound {
        var expected: Set<String>
        /// How many agents the round asked (the quorum's base; `expected` shrinks as agents leave).
        var invited: Int
        var results: [String: EvaluationCombination.Answer] = [:]
        /// The evaluation statistics (update option 2) of the answers that carried them, validated.
        var statistics: [String: EvaluationStatistics] = [:]
        var versionElapsed: Double
        /// Model bytes on the wire until the evaluated version was made.
        var traffic = Traffic()
        /// The evaluated parameters (shared with the committed model, not a copy): kept as the best model's
        /// if the round makes this version the best.
        var parameters: [Float]
        /// Agents whose answer had a loss that is not finite (refused, but counted as answered: a majority of
        /// them is a divergence).
        var nonFinite: Set<String> = []
    }

    public init(configuration: CoordinatorConfiguration, store: CoordinatorStore, logger: Logger,
                metrics: CoordinatorMetrics = .disabled, onEvent: @escaping @Sendable (CoordinatorEvent) -> Void = { _ in }) {
        self.configuration = configuration
        self.store = store
        self.logger = logger
        self.metrics = metrics
        self.onEvent = onEvent
        let initial = configuration.startingParameters
        rule = configuration.aggregation.mode.makeRule(settings: configuration.aggregation.rule, parameters: initial)
        tiers = TierAssigner(policy: configuration.tiering.policy, pins: configuration.tiering.pins)
        health = FailureDetector(policy: configuration.effectiveHealthPolicy)
        progress = RunProgress(conditions: configuration.stop.endConditions, quorum: configuration.stop.quorum)
        divergence = DivergenceGuard(policy: configuration.aggregation.divergence)
    }

    var elapsed: Double { (ContinuousClock.now - startedAt).seconds }

    // MARK: Lifecycle

    /// Restores the last committed state (global model, tier models, tiers, latency profiles). No agent
    /// is admitted before this returns.
    public func restore() async throws {
        let spec = configuration.model
        if let problem = configuration.stop.targetMetric.problem(for: spec) {
            throw StrataCoreError.invalidArgument("the target metric does not fit the model: \(problem)")
        }
        let mode = configuration.aggregation.mode
        // The rule already holds the starting parameters (a second call of startingParameters would make another copy).
        let state = try await store.restoreOrInitialize(spec: spec, initialParameters: rule.globalParameters, mode: mode.rawValue, now: Self.now())
        federationID = state.federationID
        rule.restore(globalVersion: state.version, global: state.parameters,
                     lanes: state.lanes.map { LaneState(version: $0.version, parameters: $0.parameters, pushes: $0.pushes) })
        for client in state.clients {
            profiles[client.clientID] = LatencyProfile(smoothedSeconds: client.smoothedLatency, lastSeconds: client.lastLatency, sampleCount: client.samples)
            // Until it reconnects, a client keeps its last state; silence from now on counts towards lost.
            if let stored = client.health.flatMap(HealthState.init(rawValue:)) {
                health.restore(client.clientID, state: stored == .healthy ? .suspect : stored, since: elapsed,
                               reason: stored == .healthy ? "coordinator restarted" : (client.healthReason ?? ""), lastHeard: elapsed)
            }
        }
        if mode.usesTiers, state.tierCount > 0 {
            var pins = Dictionary(state.clients.compactMap { c in c.pinnedTier.map { (c.clientID, $0) } }, uniquingKeysWith: { $1 })
            pins.merge(configuration.tiering.pins) { $1 }
            let assignment = Dictionary(state.clients.compactMap { c in c.tier.map { (c.clientID, $0) } }, uniquingKeysWith: { $1 })
            tiers = TierAssigner(policy: configuration.tiering.policy, tierCount: state.tierCount, assignment: assignment, pins: pins)
            rule.tiersFormed(count: state.tierCount)
        }
        nextTaskID = state.nextTaskID
        evicted = state.evicted
        try await restorePreprocessing(globalVersion: state.version)
        lastLaneWeights = (try? await store.latestModelVersions(limit: 1).first).map { Self.parseJSONNumbers($0.laneWeights) } ?? []
        ready = true
        logger.info("state restored", metadata: ["version": "\(rule.globalVersion)", "mode": "\(mode.rawValue)", "tiers": "\(tiers.tierCount)",
                                                  "committedUpdates": "\(state.committedUpdateCount)", "state": "\(store.path)"])
        onEvent(.restored(version: rule.globalVersion, committedUpdates: state.committedUpdateCount))
        lastCommitted = (rule.globalVersion, 0)
        let metric = configuration.stop.targetMetric
        bestRecord = state.best[metric.name]
        let range = state.scoreRanges[metric.name]
        progress = RunProgress(conditions: configuration.stop.endConditions, quorum: configuration.stop.quorum,
                               restoredBest: bestRecord.map { ScoredVersion(version: $0.version, score: $0.score) },
                               restoredRecord: range.map { metric.direction == .higherIsBetter ? $0.upperBound : $0.lowerBound })
        if let best = bestRecord {
            if metric == .accuracy { bestAccuracy = best.accuracy }
            logger.info("best version restored", metadata: ["version": "\(best.version)", "metric": "\(metric.name)", "score": "\(best.score)",
                                                             "answered": "\(best.answered)", "asked": "\(best.asked)"])
        }
        if configuration.aggregation.divergence.enabled, rule.globalVersion > 0,
           configuration.evaluateEvery > 0 || configuration.evaluationInterval != nil {
            baselineEvaluation = (rule.globalVersion, rule.globalParameters)
        }
        trainingStarted = state.trainingStartedAt != nil
        announceEnd()
        if progress.committed(version: rule.globalVersion) != nil {
            requestStop(.maxVersions, detail: "the state already holds version \(rule.globalVersion) (--max-versions \(configuration.stop.maxVersions ?? 0))")
        }
    }

    /// Logs how this run ends; a run that only the default end stops says so, and how to choose another end.
    func announceEnd() {
        let end = configuration.stop.endConditions
        let metric = end.metric
        if end.endsByDefaultOnly {
            logger.notice("this run has no end condition (--target-accuracy/--target, --patience, --max-duration, --max-versions): it ends when \(metric.name) has not improved \(metric.improvementText) for \(Int(end.defaultPatience)) s (the default end), or on SIGINT/SIGTERM",
                          metadata: ["metric": "\(metric.name)", "defaultPatienceSeconds": "\(Int(end.defaultPatience))"])
        } else {
            var parts: [String] = []
            if let target = end.target { parts.append("when \(metric.name) reaches \(target) (target)") }
            if let patience = end.patience { parts.append("when \(metric.name) has not improved \(metric.improvementText) for \(patience) s (patience)") }
            if let duration = end.maxDuration { parts.append("\(duration) s after the start (max duration)") }
            if let versions = end.maxVersions { parts.append("at version \(versions) (max versions)") }
            logger.info("the run ends at the first of: \(parts.joined(separator: "; "))", metadata: ["metric": "\(metric.name)"])
        }
        if configuration.minClients > 1 {
            logger.info(trainingStarted ? "training resumes with the agents that connect (it started before with --min-clients agents)"
                                        : "training waits for \(configuration.minClients) agents to be connected (--min-clients)",
                        metadata: ["minClients": "\(configuration.minClients)"])
        }
    }

    /// Restored and accepting agents: false while restoring, draining or stopped (what /readyz reports).
    public var isReady: Bool { ready && stopReason == nil && !draining }
    public var currentVersion: Int64 { rule.globalVersion }

    /// Suspends until the federation stops (target, limit, signal or failure).
    public func waitUntilStopped() async {
        if stopReason != nil { return }
        await withCheckedContinuation { stopWaiters.append($0) }
    }

    public func requestStop(_ reason: StopReason, detail: String? = nil) {
        guard stopReason == nil else { return }
        stopReason = reason
        stopDetail = detail
        logger.notice("stopping", metadata: ["reason": "\(reason.rawValue)", "version": "\(rule.globalVersion)"])
        let goodbye: Goodbye
        switch reason {
        case .signal:
            goodbye = Goodbye(reason: .shuttingDown, retryAfterMillis: UInt32(configuration.drainRetryAfter.milliseconds),
                              message: "coordinator is shutting down; uncommitted updates will be accepted after it restarts")
        case .failure:
            goodbye = Goodbye(reason: .shuttingDown, retryAfterMillis: UInt32(configuration.drainRetryAfter.milliseconds),
                              message: "coordinator stopped on an error: \(detail ?? "")")
        case .targetReached, .maxVersions, .maxDuration, .patience, .defaultEnd:
            goodbye = Goodbye(reason: reason == .targetReached ? .targetReached : .normal, retryAfterMillis: 0,
                              message: "training finished (\(reason.rawValue)) at version \(rule.globalVersion)")
        }
        if goodbye.retryAfterMillis == 0 {
            // The federation is over: an update folded into a buffer that will never step is answered now, so
            // that no agent holds a `received` update for ever (the durability rule lets it delete only on
            // committed or refused). The final model stays the one the stop was decided on.
            for update in inFlight.values.sorted(by: { $0.taskID < $1.taskID }) {
                sessions[update.clientID]?.send(.ack(Ack(taskID: UInt64(update.taskID), status: .refused, modelVersion: UInt64(rule.globalVersion),
                                                         code: .shuttingDown, reason: "the federation ended (\(reason.rawValue)) before this update's buffer stepped; it will not be aggregated")))
            }
            inFlight.removeAll()
        }
        finalGoodbye = goodbye
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
        await flushEvaluationWrites()
        let totals = try? await store.summary()
        let stop = configuration.stop
        return CoordinatorSummary(
            mode: configuration.aggregation.mode.rawValue,
            reason: stopReason ?? .signal,
            targetMetric: stop.targetMetric.name,
            target: stop.target,
            targetAccuracy: stop.targetAccuracy,
            targetReached: stop.target.map { t in progress.best.map { stop.targetMetric.reaches($0.score, target: t) } ?? false } ?? false,
            finalVersion: totals?.latestVersion ?? rule.globalVersion,
            lastEvaluation: lastEvaluation,
            bestAccuracy: bestAccuracy,
            best: bestRecord.map(Self.report),
            timeToTargetSeconds: timeToTarget,
            tierCount: tiers.tierCount,
            updatesAccepted: totals?.committedUpdates ?? 0,
            updatesRefused: totals?.refusedUpdates ?? 0,
            traffic: traffic,
            trafficAtTarget: trafficAtTarget,
            cpuSeconds: Self.processCPUSeconds(),
            wallSeconds: elapsed,
            detail: stopDetail)
    }

    /// User and system CPU seconds of this process so far (getrusage), for the experiments' cost column.
    static func processCPUSeconds() -> Double {
        var usage = rusage()
        guard getrusage(RUSAGE_SELF.rawValue, &usage) == 0 else { return 0 }
        func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    /// Waits until every evaluation round and best version decided so far is written.
    public func flushEvaluationWrites() async {
        while let pending = evaluationWrites {
            await pending.value
            if evaluationWrites == pending { evaluationWrites = nil }
        }
    }

    /// The time-based ends: --max-duration, --patience and the default end.
    public func checkDeadline() {
        guard stopReason == nil, let end = progress.check(at: elapsed) else { return }
        requestStop(StopReason(end.reason), detail: end.detail)
    }

    /// The coordinator's clock: deadlines of rounds and buffers, tier formation and re-tiering, the
    /// evaluation timer and the time limit.
    public func tick() async {
        checkDeadline()
        guard stopReason == nil else { return }
        // Every session is visited: not on every tick with thousands of sessions, but often enough that
        // suspect/lost thresholds of a few heartbeat intervals are met within a fraction of an interval.
        let healthCheckInterval = min(Duration.milliseconds(250), configuration.heartbeatInterval / 4)
        if lastHealthCheck.map({ ContinuousClock.now - $0 >= healthCheckInterval }) ?? true {
            lastHealthCheck = .now
            await checkHealth()
        }
        await manageTiers()
        await aggregateAndDispatch()
        if let baseline = baselineEvaluation, sessions.count >= configuration.stop.minEvaluationClients {
            baselineEvaluation = nil
            await startEvaluation(of: baseline.version, parameters: baseline.parameters, createdAt: 0)
        }
        if let interval = configuration.evaluationInterval, lastCommitted.version != lastEvaluatedVersion,
           lastEvaluationStart.map({ ContinuousClock.now - $0 >= interval }) ?? true {
            await startEvaluation()
        }
    }

    // MARK: Sessions

    public enum Admission: Sendable {
        /// Admitted; the welcome is already the first message in the session's mailbox.
        case welcome(Welcome, AgentSessionHandle)
        case refuse(ErrorMessage)
        /// The federation has ended: the agent gets the goodbye every connected agent got, not an error it would
        /// retry.
        case over(Goodbye)
    }

    func admit(clientID: String, hello: Hello, mailbox: AsyncStream<Message>.Continuation,
               lastHeard: NIOLockedValueBox<ContinuousClock.Instant> = NIOLockedValueBox(.now)) async -> Admission {
        guard ready else { return .refuse(ErrorMessage(code: .notReady, message: "coordinator is restoring its state; retry shortly")) }
        if let finalGoodbye, finalGoodbye.retryAfterMillis == 0 { return .over(finalGoodbye) }
        guard stopReason == nil else { return .refuse(ErrorMessage(code: .shuttingDown, message: "coordinator is stopping")) }
        if let eviction = evicted[clientID] {
            return .refuse(ErrorMessage(code: .evicted, message:
                "client \(clientID) was evicted by operator \(eviction.by): \(eviction.reason). Ask the operator to run `stratactl admit \(clientID)`"))
        }
        guard Int(hello.featureCount) == configuration.model.featureCount else {
            return .refuse(ErrorMessage(code: .incompatibleData, message:
                "this federation's model has \(configuration.model.featureCount) features but your data has \(hello.featureCount): select matching columns (--feature-columns or --query)"))
        }
        if let refusal = preprocessingRefusal(hello) { return .refuse(refusal) }
        if configuration.maxMessageBytes > 0, !hello.capabilities.contains(.messageParts) {
            return .refuse(ErrorMessage(code: .incompatibleData, message:
                "this federation's model (\(configuration.model.parameterCount) parameters) is larger than a frame of \(configuration.maxFrameBytes) bytes and travels in parts, which your agent does not support: upgrade it"))
        }
        let announced: AnnouncedCounts
        switch WireCounts.announced(hello, bound: configuration.maxAgentSamples) {
        case .success(let counts): announced = counts
        case .failure(let refusal):
            logger.warning("hello refused", metadata: ["client": "\(clientID)", "code": "\(refusal.code)", "reason": "\(refusal.message)"])
            return .refuse(refusal)
        }
        do {
            try await store.recordSession(clientID: clientID, agentVersion: hello.agentVersion,
                                          trainSamples: announced.train, evalSamples: announced.evaluation, now: Self.now())
        } catch {
            logger.error("cannot record session", metadata: ["client": "\(clientID)", "error": "\(error)"])
            return .refuse(ErrorMessage(code: .internalError, message: "coordinator cannot write its state"))
        }
        if let finalGoodbye, finalGoodbye.retryAfterMillis == 0 { return .over(finalGoodbye) }
        guard stopReason == nil, !draining else { return .refuse(ErrorMessage(code: .shuttingDown, message: "coordinator is stopping")) }
        guard evicted[clientID] == nil else { return .refuse(ErrorMessage(code: .evicted, message: "client \(clientID) was evicted while joining")) }
        // A newer session of the same client replaces the old one (the old TCP connection is probably dead).
        // The replaced agent is told to come back later, never to stop: if the newer session is an impostor
        // with a copied certificate, the honest agent keeps returning and the operator sees both in the log.
        if let old = sessions[clientID] {
            let retry = UInt32(clamping: max(1, configuration.replacedRetryAfter.milliseconds))
            old.finish(with: .goodbye(Goodbye(reason: .replaced, retryAfterMillis: retry, message:
                "replaced by a newer session of client \(clientID) (a reconnect, or another agent using the same certificate); retrying in \(retry / 1000) s")))
            logger.warning("session replaced by a newer one of the same client", metadata: ["client": "\(clientID)", "oldSession": "\(old.sessionID)"])
            metrics.sessionsReplaced.increment()
            rule.clientLeft(clientID)
        }
        let session = AgentSessionHandle(clientID: clientID, sessionID: nextSessionID, mailbox: mailbox, lastHeard: lastHeard, announced: announced,
                                         capabilities: hello.capabilities, featureNames: hello.featureNames)
        nextSessionID += 1
        let welcome = Welcome(clientID: clientID, sessionID: session.sessionID,
                              heartbeatIntervalMillis: UInt32(configuration.heartbeatInterval.milliseconds),
                              maxFrameBytes: UInt32(configuration.maxFrameBytes), model: WireModelSpec(configuration.model),
                              featureNames: preprocessing?.featureNames ?? [], preprocessing: preprocessing.map(WirePreprocessing.init),
                              federationID: federationID,
                              updateEncoding: hello.capabilities.contains(.compressedDeltas) && configuration.updateEncoding != .float32 ? configuration.updateEncoding : nil,
                              maxMessageBytes: hello.capabilities.contains(.messageParts) && configuration.maxMessageBytes > 0
                                  ? UInt64(configuration.maxMessageBytes) : nil,
                              // Said to agents that could receive differences: told "never", they keep no copy of the last task.
                              taskDifferences: hello.capabilities.contains(.compressedTasks) ? configuration.taskEncoding != .float32 : nil)
        if preprocessing != nil { preprocessingSent.insert(session.sessionID) }
        // Queued before the session becomes visible to dispatch and evaluation, with no suspension in
        // between: nothing sent to this session can overtake its welcome (an agent drops a connection whose
        // first message is not welcome).
        session.send(.welcome(welcome))
        sessions[clientID] = session
        weightCapCache = nil
        metrics.sessionsOpened.increment()
        outstandingTraining[clientID] = nil
        await persistHealth([health.connected(clientID, at: elapsed)].compactMap { $0 })
        logger.info("agent joined", metadata: ["client": "\(clientID)", "session": "\(session.sessionID)", "tier": "\(tiers.tier(of: clientID).map(String.init) ?? "-")",
                                                "trainSamples": "\(hello.trainSampleCount)", "pending": "\(hello.pendingUpdateCount)"])
        return .welcome(welcome, session)
    }

    /// Called after `welcome` was queued: the rule decides whether the agent trains now.
    func sessionStarted(_ session: AgentSessionHandle) async {
        await aggregateAndDispatch()
    }

    func sessionEnded(_ session: AgentSessionHandle, reason: String) async {
        guard sessions[session.clientID] === session else { return }
        forgetSession(of: session.clientID)
        await persistHealth([health.disconnected(session.clientID, reason: reason, at: elapsed)].compactMap { $0 })
        logger.info("agent left", metadata: ["client": "\(session.clientID)", "session": "\(session.sessionID)", "reason": "\(reason)"])
        await aggregateAndDispatch()
    }

    /// Drops a client's session and everything that waits on it: its outstanding training task, its place in
    /// the rule's rounds, its unanswered tasks (an update re-sent later is looked up in the durable task
    /// table instead; memory stays bounded by live sessions), its seat in open evaluation rounds.
    /// Returns the session that was open, if any.
    @discardableResult
    func forgetSession(of clientID: String) -> AgentSessionHandle? {
        let session = sessions.removeValue(forKey: clientID)
        if let session { preprocessingSent.remove(session.sessionID) }
        heldParameters[clientID] = nil
        lastTrainDispatch[clientID] = nil
        statistics.asked.remove(clientID)  // asked again if it comes back while the phase lasts
        weightCapCache = nil
        outstandingTraining[clientID] = nil
        rule.clientLeft(clientID)
        tasks = tasks.filter { $0.value.clientID != clientID }
        for (roundVersion, var round) in evaluations where round.expected.remove(clientID) != nil {
            evaluations[roundVersion] = round
            finishEvaluationIfComplete(version: roundVersion)
        }
        return session
    }

    // MARK: Tasks

    struct TaskRequest {
        var clientID: String
        var kind: TaskKind
        var lane: Int
        var baseVersion: Int64
    }

    /// Allocates and records the tasks of one dispatch round in one SQLite transaction: every one of them is
    /// durable before any is sent (so an update for any task an agent received is recognised after a
    /// restart). Nil (and the coordinator stops) if they cannot be recorded.
    func allocateTasks(_ requests: [TaskRequest]) async -> [TaskRecord]? {
        let now = Self.now()
        var records: [TaskRecord] = []
        records.reserveCapacity(requests.count)
        for request in requests {
            records.append(TaskRecord(id: nextTaskID, clientID: request.clientID, baseVersion: request.baseVersion,
                                      kind: Int(request.kind.rawValue), dispatchedAt: now, lane: request.lane))
            nextTaskID += 1
        }
        do {
            try await store.recordTasks(records)  // durable before any is sent
        } catch {
            fail("cannot record a task: \(error)")
            return nil
        }
        for record in records { tasks[record.id] = record }
        return records
    }

    func tensors(forLane lane: Int) -> (version: Int64, tensors: [WireTensor]) {
        let state = rule.lane(lane)
        if let cached = tensorCache[lane], cached.version == state.version, lane < rule.laneCount {
            return cached
        }
        tensorCache[lane] = nil   // the old version's bytes go as soon as no session is still sending them
        let fresh = (state.version, ModelTensors.encode(state.parameters, spec: configuration.model))
        tensorCache[lane] = fresh
        return fresh
    }

    /// Steps whatever the rule has due, then hands out the tasks it asks for.
    func aggregateAndDispatch() async {
        guard stopReason == nil, !draining else { return }
        let stepStart = ContinuousClock.now
        let due = rule.aggregations(now: Self.now())
        if !due.isEmpty { metrics.aggregationStep.recordNanoseconds((ContinuousClock.now - stepStart).nanoseconds) }
        enqueueChecked(due)
        guard await quorumAllowsTraining() else { return }
        // Nothing to hand out while every connected client holds a task (the usual state, checked every tick).
        guard sessions.keys.contains(where: { outstandingTraining[$0] == nil }) else { return }
        var connected: [ClientView] = []
        var idle: [ClientView] = []
        let now = ContinuousClock.now
        let pace = paceInterval()
        for clientID in sessions.keys.sorted() {
            let view = ClientView(id: clientID, tier: tiers.isFormed ? tiers.tier(of: clientID) : nil)
            connected.append(view)
            // Paced: a client that got a task less than the pacing interval ago waits for a later tick.
            let paced = pace.map { interval in lastTrainDispatch[clientID].map { now - $0 < interval } ?? false } ?? false
            if outstandingTraining[clientID] == nil, !paced { idle.append(view) }
        }
        guard !idle.isEmpty else { return }
        if gatheringStatistics {
            await gatherStatistics()
            return
        }
        // Training proper starts here (after the quorum and the statistics phase): the clocks of tier formation
        // and of patience start with it.
        if firstSessionAt == nil { firstSessionAt = .now }
        progress.trainingStarted(at: elapsed)
        let assignments = rule.schedule(idle: idle, connected: connected, now: Self.now())
        // Claimed before any suspension, so a concurrent call cannot hand the same client a second task.
        for assignment in assignments { outstandingTraining[assignment.clientID] = 0 }
        await dispatchTraining(assignments)
    }

    /// `--min-clients`: no training (and no statistics phase) before that many agents are connected at once
    /// (logged once while it waits).
    /// Once training started in this run (durable, so also after a restart) it goes on with whoever is
    /// connected: a federation that loses agents slows down but never stalls; a warning says so.
    func quorumAllowsTraining() async -> Bool {
        let needed = configuration.minClients
        if !trainingStarted {
            guard sessions.count >= needed else {
                if !loggedWaitingForClients {
                    loggedWaitingForClients = true
                    logger.notice("waiting for \(needed) agents to connect before training starts (--min-clients)",
                                  metadata: ["connected": "\(sessions.count)", "minClients": "\(needed)"])
                }
                return false
            }
            trainingStarted = true
            logger.notice(gatheringStatistics ? "enough agents connected: the statistics phase starts, then training" : "training starts",
                          metadata: ["connected": "\(sessions.count)", "minClients": "\(needed)"])
            do {
                try await store.recordTrainingStarted(at: Self.now())
            } catch {
                logger.error("cannot record that training started", metadata: ["error": "\(error)"])
            }
            guard stopReason == nil, !draining else { return false }
        }
        guard !sessions.isEmpty else { return false }
        if needed > 1 {
            if sessions.count < needed, !belowMinClients {
                belowMinClients = true
                logger.warning("fewer agents connected than --min-clients; training continues with them",
                               metadata: ["connected": "\(sessions.count)", "minClients": "\(needed)"])
            } else if sessions.count >= needed, belowMinClients {
                belowMinClients = false
                logger.info("back to --min-clients agents", metadata: ["connected": "\(sessions.count)", "minClients": "\(needed)"])
            }
        }
        return true
    }

    /// The least time between two train tasks of one agent: `--min-task-interval`, or the slowest connected
    /// agent's smoothed latency / `--pace-ratio` (nil: no pacing, or no latency measured yet).
    func paceInterval() -> Duration? {
        if let fixed = configuration.minTaskInterval { return fixed }
        guard let ratio = configuration.paceRatio,
              let slowest = sessions.keys.compactMap({ profiles[$0]?.smoothedSeconds }).max(), slowest > 0 else { return nil }
        return .milliseconds(Int64(slowest / ratio * 1000))
    }

    /// Hands out one round of training tasks: recorded together in one transaction, then sent.
    private func dispatchTraining(_ assignments: [Assignment]) async {
        // In a mode that dispatches rounds, a model larger than a frame is not kept encoded once its round is out:
        // the bytes would be a second copy of the model alive through the next step, for no later task of this
        // version (sessions still sending them hold them until sent). Asynchronous modes keep them: their tasks
        // of one version go out one by one, and each would otherwise be encoded, and held, on its own.
        defer {
            if configuration.aggregation.mode.dispatchesRounds, configuration.maxMessageBytes > 0 {   // the model travels in parts
                tensorCache.removeAll()
            }
        }
        var planned: [(assignment: Assignment, session: AgentSessionHandle, tensors: [WireTensor], parameters: [Float])] = []
        var requests: [TaskRequest] = []
        for assignment in assignments {
            guard stopReason == nil, let session = sessions[assignment.clientID] else {
                rule.clientLeft(assignment.clientID)
                continue
            }
            let (version, tensors) = tensors(forLane: assignment.lane)
            planned.append((assignment, session, tensors, rule.lane(assignment.lane).parameters))
            requests.append(TaskRequest(clientID: session.clientID, kind: .train, lane: assignment.lane, baseVersion: version))
        }
        guard !requests.isEmpty, let records = await allocateTasks(requests) else { return }
        let training = configuration.training
        for ((assignment, session, tensors, parameters), record) in zip(planned, records) {
            guard sessions[session.clientID] === session, stopReason == nil else {
                tasks[record.id] = nil
                rule.clientLeft(assignment.clientID)
                continue
            }
            outstandingTraining[session.clientID] = record.id
            if configuration.minTaskInterval != nil || configuration.paceRatio != nil { lastTrainDispatch[session.clientID] = .now }
            let sent = trainParameters(for: session, taskID: record.id, target: parameters, tensors: tensors)
            traffic.sent(sent.tensors, referenced: sent.referenced)
            session.send(.task(withPreprocessing(TrainingTask(
                taskID: UInt64(record.id), baseVersion: UInt64(record.baseVersion), kind: .train,
                hyperparameters: Hyperparameters(learningRate: training.learningRate, batchSize: UInt32(training.batchSize),
                                                 epochs: UInt32(training.epochs), seed: training.seed &+ UInt64(record.id),
                                                 proximalMu: training.proximalMu),
                parameters: sent.tensors, referencedParameters: sent.referenced), for: session)))
        }
    }

    // MARK: Updates

    func handleUpdate(_ update: Update, from session: AgentSessionHandle) async {
        await handleUpdate(UpdateDelivery(update), from: session)
    }

    /// Handles the update in `delivery`, then steps and dispatches whatever is due. The update is taken out
    /// of the delivery by `receive`, whose return ends its last reference here: the frame's tensors (a whole
    /// model for a large one) are gone before the step allocates the next model and its task bytes.
    func handleUpdate(_ delivery: UpdateDelivery, from session: AgentSessionHandle) async {
        guard let next = await receive(delivery.take(), from: session) else { return }
        if next.placesClient { await manageTiers() }
        await aggregateAndDispatch()
        checkDeadline()
    }

    /// What `handleUpdate` does after `receive`.
    struct AfterUpdate {
        /// A new latency sample can form tiers or place this client at once; re-tiering waits for the tick.
        var placesClient: Bool
    }

    /// Checks `update` and gives it to the rule (or to its evaluation round, statistics phase or failure path).
    /// Nil: nothing more to do here (a resent or misaddressed update, an evaluation or statistics answer, a
    /// failed task, which dispatches itself); otherwise a train update was folded or refused, and the step and
    /// dispatch follow.
    private func receive(_ update: Update, from session: AgentSessionHandle) async -> AfterUpdate? {
        let taskID = Int64(bitPattern: update.taskID)
        let arrival = Self.now()
        metrics.updatesReceived.increment()
        if update.failure == nil, update.compressedDelta != nil || update.spooledDelta != nil || !update.delta.isEmpty {
            metrics.deltaBytes(encoding: update.compressedDelta.map { "\($0.kind)" } ?? "float32").increment(by: update.deltaWireBytes)
            traffic.received(update)
        }
        // Ownership first: an update naming another client's task learns nothing about that task's fate.
        if let folded = inFlight[taskID] {
            guard folded.clientID == session.clientID else {
                await refuse(update, from: session, code: .wrongClient, reason: "task \(update.taskID) belongs to another client")
                return nil
            }
            // Sent again while folded but not yet committed: the committed ack will follow.
            session.send(.ack(Ack(taskID: update.taskID, status: .received, modelVersion: UInt64(rule.globalVersion))))
            return nil
        }
        var task = tasks[taskID]
        if task == nil {
            // Not handed out in this run, or already answered: the durable state decides.
            task = try? await store.task(id: taskID)
            if let stored = task, stored.clientID != session.clientID {
                await refuse(update, from: session, code: .wrongClient, reason: "task \(update.taskID) belongs to another client")
                return nil
            }
            if task != nil, let committedIn = try? await store.committedVersion(forTask: taskID) {
                // Sent again after it was committed (lost ack, reconnect, agent restart): ack again, never fold twice.
                session.send(.ack(Ack(taskID: update.taskID, status: .committed, modelVersion: UInt64(committedIn))))
                return nil
            }
            let reportedFailed = failedTasks.contains(taskID) ? true : (try? await store.reportedFailed(task: taskID)) ?? false
            if task != nil, reportedFailed {
                await refuse(update, from: session, code: .taskFailed, reason: "task \(update.taskID) was reported failed; it cannot be answered any more")
                return nil
            }
            if inFlight[taskID] != nil || tasks[taskID] != nil {
                return await receive(update, from: session)   // answered concurrently while we read
            }
        }
        guard let task else {
            await refuse(update, from: session, code: .unknownTask, reason: "task \(update.taskID) was never handed out by this coordinator")
            return nil
        }
        guard task.clientID == session.clientID else {
            await refuse(update, from: session, code: .wrongClient, reason: "task \(update.taskID) belongs to another client")
            return nil
        }
        if let reason = update.failure {
            await taskFailed(update, task: task, reason: reason, from: session)
            return nil
        }
        if task.kind == Int(TaskKind.evaluate.rawValue) {
            tasks[taskID] = nil
            handleEvaluation(update, task: task, from: session)
            return nil
        }
        if task.kind == Int(TaskKind.statistics.rawValue) {
            tasks[taskID] = nil
            await handleStatistics(update, task: task, from: session)
            return nil
        }
        let isOutstanding = outstandingTraining[session.clientID] == taskID
        if isOutstanding {
            outstandingTraining[session.clientID] = nil
            recordLatency(clientID: session.clientID, seconds: arrival - task.dispatchedAt)
        }

        let validated = validate(update, task: task, session: session)
        noteUpdate(from: session.clientID, validated: validated, dispatchedAt: task.dispatchedAt)
        switch validated {
        case .failure(let refusal):
            tasks[taskID] = nil
            await refuse(update, from: session, code: refusal.code, reason: refusal.message)
        case .success(let (delta, samples, norm)):
            // The weight counts at most `maxSampleWeightRatio` × the median agent's announced rows: one agent
            // announcing a billion rows cannot outweigh the rest of its buffer.
            let weighted = min(samples, sampleWeightCap() ?? samples)
            if let bound = rule.clipBound, Double(norm) > bound { metrics.updatesClipped.increment() }
            let ruleUpdate = RuleUpdate(taskID: taskID, clientID: session.clientID, lane: task.lane, baseVersion: task.baseVersion,
                                        sampleCount: weighted, delta: delta, norm: norm)
            switch rule.accept(ruleUpdate, now: arrival) {
            case .refused(let reason, let text):
                tasks[taskID] = nil
                let code: ErrorCode = switch reason {
                case .invalid: .invalidUpdate
                case .overShare: .overShare
                case .tooStale, .roundClosed: .tooStale
                }
                await refuse(update, from: session, code: code, reason: text)
            case .folded(let staleness, let weight):
                inFlight[taskID] = InFlightUpdate(taskID: taskID, clientID: session.clientID, lane: task.lane, baseVersion: task.baseVersion,
                                                  sampleCount: samples, trainLoss: Double(update.trainLoss),
                                                  receivedAt: arrival, latency: isOutstanding ? arrival - task.dispatchedAt : nil)
                session.send(.ack(Ack(taskID: update.taskID, status: .received, modelVersion: UInt64(rule.globalVersion))))
                logger.debug("update folded", metadata: ["client": "\(session.clientID)", "task": "\(taskID)", "tier": "\(task.lane)",
                                                         "staleness": "\(staleness)", "weight": "\(weight)"])
            }
        }
        return AfterUpdate(placesClient: isOutstanding && (!tiers.isFormed || tiers.tier(of: session.clientID) == nil))
    }

    /// The agent could not do the task (its trainer crashed, hung or refused it): nothing of the answer is
    /// used, no round waits for it, and the client gets another task.
    private func taskFailed(_ update: Update, task: TaskRecord, reason: String, from session: AgentSessionHandle) async {
        tasks[task.id] = nil
        failedTasks.insert(task.id)
        if task.kind == Int(TaskKind.evaluate.rawValue) {
            if var round = evaluations[task.baseVersion] {
                round.expected.remove(session.clientID)
                evaluations[task.baseVersion] = round
                finishEvaluationIfComplete(version: task.baseVersion)
            }
        } else if task.kind == Int(TaskKind.train.rawValue) {
            if outstandingTraining[session.clientID] == task.id { outstandingTraining[session.clientID] = nil }
            rule.clientLeft(session.clientID)
        }
        await refuse(update, from: session, code: .taskFailed, reason: "task \(task.id) failed on the agent: \(reason)")
        await aggregateAndDispatch()
    }

    /// The update's delta, checked (shapes, count, finiteness, norm) and still where it was received: the
    /// rule folds it from the frame's tensors without a copy.
    /// Returns the delta, the sample count (checked against the session's hello) and the delta's norm.
    private func validate(_ update: Update, task: TaskRecord, session: AgentSessionHandle) -> Result<(any Float32Segments, Int64, Double), ErrorMessage> {
        let spec = configuration.model
        guard update.baseVersion == UInt64(bitPattern: task.baseVersion) else {
            return .failure(ErrorMessage(code: .invalidUpdate, message: "base version \(update.baseVersion) does not match task \(task.id)'s version \(task.baseVersion)"))
        }
        let samples: Int64
        switch WireCounts.trainingSamples(update, announced: session.announced) {
        case .success(let count): samples = count
        case .failure(let refusal): return .failure(refusal)
        }
        let delta: any Float32Segments
        do {
            delta = try ModelTensors.delta(of: update, spec: spec)
        } catch {
            return .failure(ErrorMessage(code: .shapeMismatch, message: "\(error)"))
        }
        let norm: Double
        do {
            norm = try UpdateValidation.validate(delta: delta, expectedCount: spec.parameterCount, maxNorm: configuration.aggregation.maxUpdateNorm)
        } catch let error as StrataCoreError {
            switch error {
            case .nonFinite(let index): return .failure(ErrorMessage(code: .nonFiniteValue, message: "delta value at flat index \(index) is not finite"))
            case .shapeMismatch(let expected, let actual): return .failure(ErrorMessage(code: .shapeMismatch, message: "expected \(expected) values, got \(actual)"))
            case .invalidArgument(let text): return .failure(ErrorMessage(code: .normTooLarge, message: text))
            }
        } catch {
            return .failure(ErrorMessage(code: .invalidUpdate, message: "\(error)"))
        }
        return .success((delta, samples, norm))
    }

    /// `maxSampleWeightRatio` × the median of the connected agents' announced training rows (nil: no cap).
    func sampleWeightCap() -> Int64? {
        guard let ratio = configuration.maxSampleWeightRatio, !sessions.isEmpty else { return nil }
        if let cached = weightCapCache { return cached }
        let counts = sessions.values.map(\.announced.train).sorted()
        let median = Double(counts[(counts.count - 1) / 2])
        let cap = Int64(clamping: Int64(exactly: (ratio * max(1, median)).rounded(.up)) ?? .max)
        weightCapCache = cap
        return cap
    }

    func refuse(_ update: Update, from session: AgentSessionHandle, code: ErrorCode, reason: String) async {
        logger.warning("update refused", metadata: ["client": "\(session.clientID)", "task": "\(update.taskID)", "tier": "\(tiers.tier(of: session.clientID).map(String.init) ?? "-")",
                                                    "code": "\(code)", "reason": "\(reason)"])
        metrics.updatesRefused(code: code.name).increment()
        session.send(.ack(Ack(taskID: update.taskID, status: .refused, modelVersion: UInt64(rule.globalVersion), code: code, reason: reason)))
        do {
            try await store.recordRefusal(taskID: Int64(bitPattern: update.taskID), clientID: session.clientID, code: Int(code.rawValue), reason: reason, now: Self.now())
        } catch {
            logger.error("cannot record a refusal", metadata: ["error": "\(error)"])
        }
    }

    // MARK: Commits

    func enqueue(_ outcomes: [AggregationOutcome]) {
        guard !outcomes.isEmpty else { return }
        outcomeQueue.append(contentsOf: outcomes)
        if !committing {
            committing = true
            Task { await self.drainOutcomes() }
        }
    }

    /// Persists outcomes one at a time, in order. Each is one transaction (lane version, global version
    /// with provenance, update ids, client counters); the committed acks go out only after it.
    /// Suspends until every outcome produced so far is durable (or the coordinator stopped).
    func waitUntilCommitted() async {
        guard committing || !outcomeQueue.isEmpty else { return }
        await withCheckedContinuation { commitWaiters.append($0) }
    }

    private func drainOutcomes() async {
        defer {
            committing = false
            let waiters = commitWaiters
            commitWaiters.removeAll()
            for waiter in waiters { waiter.resume() }
        }
        while !outcomeQueue.isEmpty, stopReason == nil {
            let outcome = outcomeQueue.removeFirst()
            let now = Self.now()
            let records = outcome.updates.map { folded -> CommittedUpdateRecord in
                let info = inFlight[folded.taskID]
                return CommittedUpdateRecord(
                    taskID: folded.taskID, clientID: folded.clientID, version: outcome.globalVersion, baseVersion: folded.baseVersion,
                    sampleCount: info?.sampleCount ?? 0, staleness: folded.staleness, weight: folded.weight,
                    trainLoss: info?.trainLoss ?? 0, receivedAt: info?.receivedAt ?? now,
                    lane: outcome.lane, laneVersion: outcome.laneVersion, latencySeconds: info?.latency)
            }
            let clientIDs = Set(outcome.updates.map(\.clientID))
            let profileRows = clientIDs.compactMap { id in
                profiles[id].map { ClientTiering(clientID: id, tier: nil, pinnedTier: nil, smoothedLatency: $0.smoothedSeconds,
                                                 lastLatency: $0.lastSeconds, samples: $0.sampleCount) }
            }
            let version = ModelVersionRecord(
                version: outcome.globalVersion, createdAt: now, parameters: Data(),   // written in place by the store
                updateCount: outcome.updates.count, totalWeight: outcome.totalWeight, meanStaleness: outcome.meanStaleness,
                trigger: outcome.trigger, lane: outcome.lane,
                laneVersions: Self.json(outcome.combinedLaneVersions.map { Double($0) }), laneWeights: Self.json(outcome.laneWeights))
            let laneValues = outcome.laneParameters == outcome.globalParameters ? nil : outcome.laneParameters
            let lane = LaneVersionRecord(lane: outcome.lane, version: outcome.laneVersion, createdAt: now,
                                         parameters: Data(),   // empty: the global model's; else written in place
                                         pushes: outcome.lanePushes,
                                         globalVersion: outcome.globalVersion)
            // Versions retention must not drop yet: the best, those under evaluation (one may become the best),
            // and the latest committed one (an evaluation timer may pick it while this commit is under way).
            var pinned = Set(evaluations.keys)
            pinned.insert(lastCommitted.version)
            if let best = progress.best?.version { pinned.insert(best) }
            let commitStart = ContinuousClock.now
            do {
                try await store.commitAggregation(version, lane: lane, updates: records, profiles: profileRows,
                                                  retention: configuration.modelRetention, pinned: pinned,
                                                  values: outcome.globalParameters, laneValues: laneValues)
                metrics.commitDuration.recordNanoseconds((ContinuousClock.now - commitStart).nanoseconds)
            } catch {
                // Fail-stop: nothing of this step was acknowledged as committed, so agents keep and re-send it.
                fail("cannot commit version \(outcome.globalVersion): \(error)")
                return
            }
            lastCommitted = (outcome.globalVersion, elapsed)
            lastCommittedTraffic = traffic
            lastLaneWeights = outcome.laneWeights
            laneRates[outcome.lane, default: RateWindow()].record(Int64(records.count), at: elapsed)
            metrics.updatesAccepted.increment(by: records.count)
            for record in records { metrics.staleness.record(record.staleness) }
            for record in records {
                inFlight[record.taskID] = nil
                tasks[record.taskID] = nil
                sessions[record.clientID]?.send(.ack(Ack(taskID: UInt64(record.taskID), status: .committed, modelVersion: UInt64(outcome.globalVersion))))
            }
            logger.info("version committed", metadata: ["version": "\(outcome.globalVersion)", "tier": "\(outcome.lane)",
                                                        "tierVersion": "\(outcome.laneVersion)", "updates": "\(records.count)",
                                                        "trigger": "\(outcome.trigger)", "meanStaleness": "\(outcome.meanStaleness)"])
            onEvent(.versionCommitted(version: outcome.globalVersion, lane: outcome.lane, updates: records.count, meanStaleness: outcome.meanStaleness))
            if let end = progress.committed(version: outcome.globalVersion) {
                requestStop(StopReason(end.reason), detail: end.detail)
            } else if configuration.evaluateEvery > 0, outcome.globalVersion % Int64(configuration.evaluateEvery) == 0 {
                await startEvaluation(of: outcome.globalVersion, parameters: outcome.globalParameters, createdAt: lastCommitted.elapsed,
                                      traffic: lastCommittedTraffic)
            }
        }
    }

    func fail(_ detail: String) {
        logger.critical("\(detail)")
        requestStop(.failure, detail: detail)
    }

    static func json(_ values: [Double]) -> String {
        "[" + values.map { $0 == $0.rounded() && abs($0) < 1e15 ? String(Int64($0)) : String(format: "%.6g", $0) }.joined(separator: ",") + "]"
    }

    static func now() -> Double { Date().timeIntervalSince1970 }
}
