import Foundation
import StrataCore
import StrataStore
import StrataWire

/// Evaluation rounds: the latest durable global model goes to every connected agent, which reports its
/// accuracy and loss on its own evaluation rows, and (agents with capability bit 2) additive statistics from
/// which RMSE, MAE, R², macro-F1 and AUC are pooled; the round's value of the target metric decides the target.
extension Coordinator {
    /// Evaluates the latest committed version (the evaluation timer).
    func startEvaluation() async {
        let (version, createdAt) = lastCommitted
        guard version > 0, !sessions.isEmpty, evaluations[version] == nil, version != lastEvaluatedVersion,
              let parameters = await committedParameters(version) else { return }
        await startEvaluation(of: version, parameters: parameters, createdAt: createdAt, traffic: lastCommittedTraffic)
    }

    /// A committed version's parameters: the rule's own array while that version is still the global model
    /// (no copy), else read back from the store (the rule has stepped since; nil if retention dropped them).
    func committedParameters(_ version: Int64) async -> [Float]? {
        if rule.globalVersion == version { return rule.globalParameters }
        do {
            guard let record = try await store.modelVersion(version), let values = FloatBlob.decode(record.parameters),
                  values.count == configuration.model.parameterCount else { return nil }
            return values
        } catch {
            logger.error("cannot read a committed model version to evaluate it", metadata: ["version": "\(version)", "error": "\(error)"])
            return nil
        }
    }

    /// Evaluates `evaluatedVersion` (the latest committed one, or the model a restart restored).
    func startEvaluation(of evaluatedVersion: Int64, parameters: [Float], createdAt: Double, traffic costs: Traffic = Traffic()) async {
        let targets = Array(sessions.values)
        // Version 0 is the untrained model: evaluating it as the first agents trickle in says nothing.
        guard evaluatedVersion > 0, !targets.isEmpty, evaluations[evaluatedVersion] == nil, evaluatedVersion != lastEvaluatedVersion,
              !parameters.isEmpty else { return }
        lastEvaluatedVersion = max(lastEvaluatedVersion, evaluatedVersion)
        lastEvaluationStart = .now
        evaluations[evaluatedVersion] = EvaluationRound(expected: Set(targets.map(\.clientID)), invited: targets.count, versionElapsed: createdAt,
                                                        traffic: costs, parameters: parameters)
        let tensors = ModelTensors.encode(parameters, spec: configuration.model)
        // One transaction for the whole round's tasks, durable before any is sent.
        guard let records = await allocateTasks(targets.map {
            TaskRequest(clientID: $0.clientID, kind: .evaluate, lane: -1, baseVersion: evaluatedVersion)
        }) else { return }
        for (session, record) in zip(targets, records) {
            traffic.evaluationSent(tensors)
            session.send(.task(withPreprocessing(TrainingTask(
                taskID: UInt64(record.id), baseVersion: UInt64(evaluatedVersion), kind: .evaluate,
                hyperparameters: Hyperparameters(learningRate: 0, batchSize: 0, epochs: 0, seed: 0, proximalMu: 0),
                parameters: tensors), for: session)))
        }
        let timeout = configuration.evaluationTimeout
        Task { [weak self] in
            try? await Task.sleep(for: timeout)
            await self?.closeEvaluation(version: evaluatedVersion)
        }
    }

    func handleEvaluation(_ update: Update, task: TaskRecord, from session: AgentSessionHandle) {
        let samples: Int64
        switch WireCounts.evaluationSamples(update, announced: session.announced) {
        case .success(let count): samples = count
        case .failure(let refusal):
            refuseEvaluation(update, from: session, version: task.baseVersion, refusal)
            return
        }
        guard update.evalAccuracy.isFinite, update.evalLoss.isFinite, (0...1).contains(update.evalAccuracy), update.evalLoss >= 0 else {
            refuseEvaluation(update, from: session, version: task.baseVersion, ErrorMessage(code: .outOfRange, message:
                "evaluation answer out of range: accuracy \(update.evalAccuracy) (0...1), loss \(update.evalLoss) (finite, >= 0)"))
            // A model so far gone that its loss overflows: refused as before, but it counts as an answer, and a
            // quorum of them tells the divergence guard.
            if !update.evalLoss.isFinite, var round = evaluations[task.baseVersion] {
                round.nonFinite.insert(session.clientID)
                evaluations[task.baseVersion] = round
                finishEvaluationIfComplete(version: task.baseVersion)
            }
            return
        }
        // Option 2: checked against the model and the answer itself before anything of it is used; an honest
        // agent never sends statistics that fail, so the whole answer is refused.
        var statistics: EvaluationStatistics?
        if let wire = update.evaluation {
            let candidate = EvaluationStatistics(wire)
            do {
                try candidate.validate(model: configuration.model, rows: samples, reportedAccuracy: Double(update.evalAccuracy),
                                       reportedLoss: Double(update.evalLoss), targetScale: preprocessing?.target.scale ?? 1)
                statistics = candidate
            } catch {
                let code: ErrorCode = if case .notFinite = error { .nonFiniteValue } else { .invalidUpdate }
                refuseEvaluation(update, from: session, version: task.baseVersion, ErrorMessage(code: code, message: "evaluation statistics refused: \(error)"))
                return
            }
        }
        // Option 5: the loss's spread, bounded by the answer's own loss and rows (a liar gets no further than that).
        if let squares = update.evalLossSquares {
            do {
                try ScoreSpread.check(squares: squares, loss: Double(update.evalLoss), rows: samples)
            } catch {
                let code: ErrorCode = error == .notFinite ? .nonFiniteValue : .invalidUpdate
                refuseEvaluation(update, from: session, version: task.baseVersion, ErrorMessage(code: code, message: "evaluation loss spread refused: \(error)"))
                return
            }
        }
        session.send(.ack(Ack(taskID: update.taskID, status: .committed, modelVersion: UInt64(task.baseVersion))))
        let record = EvaluationRecord(taskID: task.id, clientID: session.clientID, modelVersion: task.baseVersion,
                                      sampleCount: samples, loss: Double(update.evalLoss),
                                      accuracy: Double(update.evalAccuracy), at: Self.now())
        let store = self.store
        Task { try? await store.recordEvaluation(record) }
        guard var round = evaluations[task.baseVersion] else { return }
        round.results[session.clientID] = EvaluationCombination.Answer(samples: samples, accuracy: Double(update.evalAccuracy),
                                                                       loss: Double(update.evalLoss), lossSquares: update.evalLossSquares)
        round.statistics[session.clientID] = statistics
        evaluations[task.baseVersion] = round
        finishEvaluationIfComplete(version: task.baseVersion)
    }

    private func refuseEvaluation(_ update: Update, from session: AgentSessionHandle, version: Int64, _ refusal: ErrorMessage) {
        logger.warning("evaluation answer refused", metadata: ["client": "\(session.clientID)", "task": "\(update.taskID)",
                                                               "code": "\(refusal.code)", "reason": "\(refusal.message)"])
        metrics.updatesRefused(code: refusal.code.name).increment()
        session.send(.ack(Ack(taskID: update.taskID, status: .refused, modelVersion: UInt64(version), code: refusal.code, reason: refusal.message)))
    }

    func finishEvaluationIfComplete(version evaluated: Int64) {
        guard let round = evaluations[evaluated], round.expected.isSubset(of: Set(round.results.keys).union(round.nonFinite)) else { return }
        closeEvaluation(version: evaluated)
    }

    func closeEvaluation(version evaluated: Int64) {
        guard let round = evaluations.removeValue(forKey: evaluated) else { return }
        // The target (and the divergence guard) needs a quorum: answers from enough of the agents the round
        // asked, so a few fast (or lying) agents cannot end the federation, or step it back, on their own.
        let quorum = max(configuration.stop.minEvaluationClients,
                         Int((configuration.stop.evaluationQuorum * Double(round.invited)).rounded(.up)))
        if round.nonFinite.count >= quorum {
            judge(version: evaluated, loss: .infinity, parameters: round.parameters)
        }
        let clients = round.results.keys.sorted()
        let answers = clients.map { round.results[$0]! }
        let combination = configuration.stop.evaluationCombination
        guard let combined = combination.combine(answers) else {
            logger.info("evaluation round closed without answers", metadata: ["version": "\(evaluated)", "asked": "\(round.invited)"])
            return
        }
        let (accuracy, loss, samples) = (combined.accuracy, combined.loss, combined.samples)
        // RMSE, MAE, R², macro-F1, AUC: pooled from the statistics of the answers that carried them (same weight cap).
        let pooled = combination.pool(answers, statistics: clients.map { round.statistics[$0] })
        // Per tier (capped weights, not trimmed: a tier may have one member), for TiFL's adaptive selection and for operators.
        var perTier: [Int: (samples: Double, correct: Double)] = [:]
        for (clientID, weight) in zip(clients, combination.weights(answers)) {
            guard let tier = tiers.tier(of: clientID) else { continue }
            perTier[tier, default: (0, 0)].samples += weight
            perTier[tier, default: (0, 0)].correct += weight * round.results[clientID]!.accuracy
        }
        let tierAccuracies = perTier.mapValues { $0.samples > 0 ? $0.correct / $0.samples : 0 }
        rule.observeEvaluation(tierAccuracies: tierAccuracies)
        // The quorum counts the agents the round asked, not those still connected: answers from enough of
        // them, so a few fast (or lying) agents cannot end the federation, or make a version the best, alone.
        let metric = configuration.stop.targetMetric
        let score = metric.value(in: EvaluationResult.scores(accuracy: accuracy, loss: loss, metrics: pooled.metrics))
        // A pooled metric counts by the answers whose statistics it pooled: older agents' answers do not make a
        // round of a few agents' statistics the federation's.
        let answered = metric.isPooled ? pooled.answers[metric.name] ?? 0 : round.results.count
        // Accuracy and loss know their standard error (a pooled metric does not): the latest version within it
        // of the best score becomes the best (RunProgress).
        let standardError: Double? = switch metric {
        case .accuracy: combined.accuracyError
        case .loss: combined.lossError
        default: nil
        }
        let verdict = progress.evaluated(version: evaluated, score: score, answered: answered, asked: round.invited, at: elapsed,
                                         standardError: standardError)
        if metric.isPooled, answered < round.results.count, !round.results.isEmpty {
            logger.info("answers without evaluation statistics do not count for the target metric", metadata: [
                "version": "\(evaluated)", "metric": "\(metric.name)", "withStatistics": "\(answered)", "answers": "\(round.results.count)"])
        }
        let result = EvaluationResult(version: evaluated, accuracy: accuracy, loss: loss, metrics: pooled.metrics,
                                      statisticsClients: round.statistics.count, samples: samples,
                                      clients: round.results.count, expectedClients: max(round.expected.count, round.results.count),
                                      askedClients: round.invited, requiredClients: verdict.required, counted: verdict.counted,
                                      metric: metric.name, score: score, newBest: verdict.newBest,
                                      elapsedSeconds: elapsed, versionElapsedSeconds: round.versionElapsed,
                                      tierAccuracies: tierAccuracies, traffic: round.traffic)
        lastEvaluation = result
        onEvent(.evaluated(result))
        let now = Self.now()
        var best: BestVersionRecord?
        if verdict.newBest, let score {
            best = BestVersionRecord(metric: metric.name, version: evaluated, score: score, direction: metric.direction.rawValue,
                                     accuracy: accuracy, loss: loss, answered: answered, asked: round.invited, at: now,
                                     metrics: pooled.metrics.isEmpty ? nil : pooled.metrics)
            bestRecord = best
            logger.info("new best version", metadata: ["version": "\(evaluated)", "metric": "\(metric.name)", "score": "\(score)",
                                                        "standardError": "\(standardError.map { String($0) } ?? "unknown")",
                                                        "record": "\(progress.record.map { String($0) } ?? "none")",
                                                        "answered": "\(answered)", "asked": "\(round.invited)"])
        }
        persistEvaluation(EvaluationRoundRecord(
            version: evaluated, accuracy: accuracy, loss: loss, samples: samples, answered: round.results.count, asked: round.invited,
            required: verdict.required, counted: verdict.counted, metric: metric.name, score: score, best: verdict.newBest,
            versionCreatedAt: wallStart + round.versionElapsed, at: now, metrics: pooled.metrics.isEmpty ? nil : pooled.metrics,
            statisticsAnswered: round.statistics.count), best: best)
        guard verdict.counted else {
            logger.info("evaluation below quorum: not counted towards the target, the best version or patience", metadata: [
                "version": "\(evaluated)", "answers": "\(answered)", "asked": "\(round.invited)", "quorum": "\(verdict.required)"])
            return
        }
        bestAccuracy = max(bestAccuracy ?? 0, accuracy)
        // The divergence guard judges counted rounds by their loss (its own best, the step-back target).
        judge(version: evaluated, loss: loss, parameters: round.parameters)
        if let end = verdict.end {
            if timeToTarget == nil {
                timeToTarget = round.versionElapsed
                trafficAtTarget = round.traffic
            }
            if stopReason == nil { requestStop(StopReason(end.reason), detail: end.detail) }
        }
    }

    /// Writes a closed round (and a new best version) after every earlier one: the curve keeps its order and
    /// an older best can never overwrite a newer one.
    func persistEvaluation(_ round: EvaluationRoundRecord, best: BestVersionRecord?) {
        let previous = evaluationWrites
        let store = self.store
        let logger = self.logger
        evaluationWrites = Task {
            await previous?.value
            do {
                try await store.recordEvaluationRound(round, best: best)
            } catch {
                logger.error("cannot record an evaluation round", metadata: ["version": "\(round.version)", "error": "\(error)"])
            }
        }
    }

    static func report(_ best: BestVersionRecord) -> BestModelReport {
        BestModelReport(metric: best.metric, direction: best.direction, version: best.version, score: best.score,
                        accuracy: best.accuracy, loss: best.loss, answered: best.answered, asked: best.asked, at: best.at,
                        metrics: best.metrics)
    }
}
