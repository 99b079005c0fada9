import Foundation
import Logging
import StrataCore
import StrataStore
import StrataWire

/// The divergence guard at work: `DivergenceGuard` (pure, StrataCore) decides from evaluations, refusals
/// and non-finite models; this extension feeds it and carries its decisions out — every model back to the
/// best version's parameters, a lower server step, a warning with the numbers, a metric — and the
/// federation carries on. docs/ALGORITHMS.md, "Divergence guard".
extension Coordinator {
    /// Outcomes fresh from the rule, queued for commit in order. A model that is not finite is never
    /// committed: the outcomes from the first such one on are dropped (their updates refused) and the
    /// guard steps back in their place, so the committed versions stay dense.
    func enqueueChecked(_ outcomes: [AggregationOutcome]) {
        guard divergence.policy.enabled,
              let bad = outcomes.firstIndex(where: { $0.globalParameters.firstNonFiniteIndex() != nil || $0.laneParameters.firstNonFiniteIndex() != nil })
        else {
            enqueue(outcomes)
            return
        }
        enqueue(Array(outcomes[..<bad]))
        let dropped = outcomes[bad...]
        let first = dropped.first!.globalVersion
        guard let recovery = divergence.nonFiniteModel(version: first, now: Self.now()) else { return }
        recover(recovery, discardingFrom: first, dropped: dropped.flatMap(\.updates))
    }

    /// Every update that reached validation: refusals as norm-too-large or non-finite are the divergent ones.
    func noteUpdate(from clientID: String, validated: Result<(any Float32Segments, Int64, Double), ErrorMessage>, dispatchedAt: Double) {
        var divergent = false
        if case .failure(let refusal) = validated {
            divergent = refusal.code == .normTooLarge || refusal.code == .nonFiniteValue
        }
        if let recovery = divergence.updateChecked(client: clientID, divergent: divergent, dispatchedAt: dispatchedAt, now: Self.now()) {
            recover(recovery)
        }
    }

    /// A counted evaluation (it met the quorum): a new best keeps its parameters; a divergence steps back.
    func judge(version: Int64, loss: Double, parameters: [Float]) {
        switch divergence.evaluated(version: version, loss: loss, now: Self.now()) {
        case .none:
            break
        case .newBest:
            bestModel = (version, parameters)
        case .recover(let recovery):
            recover(recovery)
        }
    }

    /// Carries a recovery out, without suspending: the rule steps every model back (new versions, queued
    /// for commit like any step), the updates that will never be aggregated are refused (their agents may
    /// drop them and train on the restored model), and the step scale holds from now on.
    func recover(_ recovery: DivergenceGuard.Recovery, discardingFrom: Int64? = nil, dropped: [FoldedUpdate] = []) {
        let known = bestModel.flatMap { best in recovery.target?.version == best.version ? best : nil }
        let target = known?.parameters ?? configuration.startingParameters
        let targetVersion = known?.version ?? 0
        let fromVersion = rule.globalVersion
        let rollback = rule.rollBack(to: target, stepScale: recovery.stepScale, discardingFrom: discardingFrom)
        let firstVersion = rollback.outcomes.first?.globalVersion ?? rule.globalVersion
        divergence.rolledBack(firstVersion: firstVersion, now: Self.now())
        tensorCache.removeAll()
        let reason = "the divergence guard stepped the models back to version \(targetVersion) (\(recovery.cause)); train on the restored model"
        for update in dropped + rollback.discarded {
            refuseFolded(taskID: update.taskID, clientID: update.clientID, reason: reason)
        }
        enqueue(rollback.outcomes)
        metrics.divergenceRecoveries(cause: recovery.cause.label).increment()
        metrics.serverStepScale.record(recovery.stepScale)
        let optimizer = configuration.aggregation.rule.serverOptimizer
        logger.warning("divergence: stepping every model back to the best version and lowering the server step", metadata: [
            "cause": "\(recovery.cause.label)", "why": "\(recovery.cause)",
            "bestVersion": "\(targetVersion)", "bestLoss": "\(recovery.target.map { String($0.loss) } ?? "none (initial model)")",
            "fromVersion": "\(fromVersion)", "restoredAs": "\(firstVersion)",
            "stepScale": "\(recovery.previousStepScale) -> \(recovery.stepScale)",
            "serverLearningRate": "\(Double(optimizer.learningRate) * recovery.stepScale)",
            "discardedUpdates": "\(dropped.count + rollback.discarded.count)", "recoveries": "\(recovery.count)",
        ])
        onEvent(.divergenceRecovered(DivergenceReport(
            cause: recovery.cause.label, detail: "\(recovery.cause)", bestVersion: targetVersion, bestLoss: recovery.target?.loss,
            fromVersion: fromVersion, restoredVersion: firstVersion, stepScale: recovery.stepScale,
            serverLearningRate: Double(optimizer.learningRate) * recovery.stepScale, recoveries: recovery.count)))
    }

    /// Answers an update the rule had folded (acknowledged `received`) and will never aggregate.
    private func refuseFolded(taskID: Int64, clientID: String, reason: String) {
        inFlight[taskID] = nil
        tasks[taskID] = nil
        metrics.updatesRefused(code: ErrorCode.tooStale.name).increment()
        sessions[clientID]?.send(.ack(Ack(taskID: UInt64(taskID), status: .refused, modelVersion: UInt64(rule.globalVersion),
                                          code: .tooStale, reason: reason)))
        let store = self.store, logger = self.logger, now = Self.now()
        Task {
            do {
                try await store.recordRefusal(taskID: taskID, clientID: clientID, code: Int(ErrorCode.tooStale.rawValue), reason: reason, now: now)
            } catch {
                logger.error("cannot record a refusal", metadata: ["error": "\(error)"])
            }
        }
    }

    /// The guard's state, for the admin API and tests.
    public var divergenceState: (stepScale: Double, recoveries: Int, bestVersion: Int64?, bestLoss: Double?) {
        (divergence.stepScale, divergence.recoveries, divergence.best?.version, divergence.best?.loss)
    }
}
