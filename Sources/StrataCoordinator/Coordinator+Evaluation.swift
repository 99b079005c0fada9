import Foundation
import StrataCore
import StrataStore
import StrataWire

/// Evaluation rounds: the latest durable global model goes to every connected agent, which reports its
/// accuracy on its own evaluation rows; the round's sample-weighted accuracy decides the target.
extension Coordinator {
    func startEvaluation() async {
        let (evaluatedVersion, parameters, createdAt) = lastCommitted
        let targets = Array(sessions.values)
        // Version 0 is the untrained model: evaluating it as the first agents trickle in says nothing.
        guard evaluatedVersion > 0, !targets.isEmpty, evaluations[evaluatedVersion] == nil, evaluatedVersion != lastEvaluatedVersion,
              !parameters.isEmpty else { return }
        lastEvaluatedVersion = evaluatedVersion
        lastEvaluationStart = .now
        evaluations[evaluatedVersion] = EvaluationRound(expected: Set(targets.map(\.clientID)), versionElapsed: createdAt)
        let tensors = ModelTensors.encode(parameters, spec: configuration.model)
        // One transaction for the whole round's tasks, durable before any is sent.
        guard let records = await allocateTasks(targets.map {
            TaskRequest(clientID: $0.clientID, kind: .evaluate, lane: -1, baseVersion: evaluatedVersion)
        }) else { return }
        for (session, record) in zip(targets, records) {
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

    func handleEvaluation(_ update: Update, task: TaskRecord, from session: AgentSessionHandle) {
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

    func finishEvaluationIfComplete(version evaluated: Int64) {
        guard let round = evaluations[evaluated], round.expected.isSubset(of: round.results.keys) else { return }
        closeEvaluation(version: evaluated)
    }

    func closeEvaluation(version evaluated: Int64) {
        guard let round = evaluations.removeValue(forKey: evaluated) else { return }
        let samples = round.results.values.reduce(Int64(0)) { $0 + $1.samples }
        guard samples > 0 else { return }
        let accuracy = round.results.values.reduce(0.0) { $0 + Double($1.samples) * $1.accuracy } / Double(samples)
        let loss = round.results.values.reduce(0.0) { $0 + Double($1.samples) * $1.loss } / Double(samples)
        // Per tier, for TiFL's adaptive selection and for operators.
        var perTier: [Int: (samples: Int64, correct: Double)] = [:]
        for (clientID, result) in round.results {
            guard let tier = tiers.tier(of: clientID) else { continue }
            perTier[tier, default: (0, 0)].samples += result.samples
            perTier[tier, default: (0, 0)].correct += Double(result.samples) * result.accuracy
        }
        let tierAccuracies = perTier.mapValues { $0.samples > 0 ? $0.correct / Double($0.samples) : 0 }
        rule.observeEvaluation(tierAccuracies: tierAccuracies)
        let result = EvaluationResult(version: evaluated, accuracy: accuracy, loss: loss, samples: samples,
                                      clients: round.results.count, expectedClients: max(round.expected.count, round.results.count),
                                      elapsedSeconds: elapsed, versionElapsedSeconds: round.versionElapsed,
                                      tierAccuracies: tierAccuracies)
        lastEvaluation = result
        onEvent(.evaluated(result))
        guard round.results.count >= configuration.stop.minEvaluationClients else { return }
        bestAccuracy = max(bestAccuracy ?? 0, accuracy)
        if let target = configuration.stop.targetAccuracy, accuracy >= target {
            if timeToTarget == nil { timeToTarget = round.versionElapsed }
            if stopReason == nil {
                requestStop(.targetReached, detail: String(format: "version %lld reached accuracy %.4f (target %.4f)", evaluated, accuracy, target))
            }
        }
    }
}
