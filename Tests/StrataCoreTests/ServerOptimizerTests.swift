import Testing
@testable import StrataCore

// Each server optimiser against a reference computed with NumPy in float64 (the script is in the comment
// below), three steps from x0 = (0.5, −1, 2) with η = 0.1, β1 = 0.9, β2 = 0.99, τ = 10⁻³ (SGD: β = 0.9).
// The deltas exercise Yogi's sign both ways (v < Δ̄² on the first steps, v > Δ̄² for coordinate 2 on the
// third) and a zero delta.
//
//   x = x0.copy(); m = zeros(3); v = full(3, tau**2)
//   for d in D:
//       m = b1*m + (1-b1)*d                      # sgd: m = 0.9*m + d; x = x + eta*m
//       v = b2*v + (1-b2)*d*d                     # adam
//       v = v - (1-b2)*d*d*np.sign(v - d*d)       # yogi
//       v = v + d*d                               # adagrad
//       x = x + eta*m/(np.sqrt(v) + tau)

private let x0: [Float] = [0.5, -1.0, 2.0]
private let deltas: [[Float]] = [[0.1, -0.2, 0.0], [0.3, 0.05, -0.4], [-0.2, 0.1, 0.001]]

private struct Reference {
    var x: [[Double]]
    var m: [[Double]]
    var v: [[Double]]?
}

private let references: [ServerOptimizerKind: Reference] = [
    .sgd: Reference(
        x: [[0.51, -1.02, 2.0], [0.549, -1.033, 1.96], [0.5641, -1.0347, 1.9241]],
        m: [[0.1, -0.2, 0.0], [0.39, -0.13, -0.4], [0.151, -0.017, -0.359]],
        v: nil),
    .adam: Reference(
        x: [[0.5905028311852221, -1.0951260516755887, 2.0],
            [0.7100523613696729, -1.155472848320026, 1.902468163511758],
            [0.7494960336550219, -1.1626294332314278, 1.8145034320350995]],
        m: [[0.01, -0.02, 0.0], [0.039, -0.013, -0.04], [0.0151, -0.0017, -0.0359]],
        v: [[0.00010099, 0.00040099, 9.9e-07],
            [0.0009999801, 0.0004219801, 0.0016009801],
            [0.001389980299, 0.000517760299, 0.001584980299]]),
    .yogi: Reference(
        x: [[0.5904987562112088, -1.0951249219725039, 2.0],
            [0.7099892339637485, -1.1551995047318342, 1.9024687548812873],
            [0.7492815205080934, -1.1623021662175506, 1.81493419567783]],
        m: [[0.01, -0.02, 0.0], [0.039, -0.013, -0.04], [0.0151, -0.0017, -0.0359]],
        v: [[0.000101, 0.000401, 1e-06],
            [0.001001, 0.000426, 0.001601],
            [0.001401, 0.000526, 0.00160099]]),
    .adagrad: Reference(
        x: [[0.5099004999875006, -1.0099501249992187, 2.0],
            [0.5221944445264175, -1.0162255372018005, 1.9900249687500489],
            [0.5262193179780006, -1.0169642469994342, 1.9810724061099907]],
        m: [[0.01, -0.02, 0.0], [0.039, -0.013, -0.04], [0.0151, -0.0017, -0.0359]],
        v: [[0.010001, 0.040001, 1e-06],
            [0.100001, 0.042501, 0.160001],
            [0.140001, 0.052501, 0.160002]]),
]

/// |a − b| ≤ relative · |b| + absolute, element by element.
private func close(_ a: [Float], _ b: [Double], relative: Double = 1e-5, absolute: Double = 1e-7) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { abs(Double($0) - $1) <= relative * abs($1) + absolute }
}

private func settings(_ kind: ServerOptimizerKind) -> ServerOptimizerSettings {
    kind == .sgd ? .sgd(learningRate: 0.1, momentum: 0.9)
        : ServerOptimizerSettings(kind: kind, learningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3)
}

@Suite struct ServerOptimizerTests {
    @Test(arguments: ServerOptimizerKind.allCases)
    func threeStepsMatchTheNumPyReference(kind: ServerOptimizerKind) throws {
        let optimizer = settings(kind).makeOptimizer()
        let reference = try #require(references[kind])
        var model = x0
        var state = optimizer.makeState(parameterCount: 3)
        for (t, delta) in deltas.enumerated() {
            AggregationStep.apply(model: &model, meanDelta: delta, optimizer: optimizer, state: &state)
            #expect(close(model, reference.x[t]), "\(kind) step \(t + 1): x = \(model), expected \(reference.x[t])")
            #expect(close(state.first, reference.m[t]), "\(kind) step \(t + 1): m = \(state.first)")
            if let v = reference.v {
                #expect(close(state.second, v[t], relative: 1e-4, absolute: 1e-12), "\(kind) step \(t + 1): v = \(state.second), expected \(v[t])")
            } else {
                #expect(state.second.isEmpty)
            }
        }
    }

    /// From a buffer's weighted sum (the path the rules take) the step is the same, bit for bit, as the mean
    /// followed by `apply`, and the buffer is left empty.
    @Test(arguments: ServerOptimizerKind.allCases)
    func fusedStepFromABufferEqualsTheMeanThenApply(kind: ServerOptimizerKind) throws {
        let optimizer = settings(kind).makeOptimizer()
        let n = 517
        var g = SeededGenerator(seed: 11)
        var fusedModel = (0..<n).map { _ in Float(g.nextNormal()) }
        var referenceModel = fusedModel
        var fusedState = optimizer.makeState(parameterCount: n), referenceState = fusedState
        var buffer = WeightedAccumulator(parameterCount: n), reference = buffer
        for step in 0..<4 {
            for k in 0..<3 {
                let delta = (0..<n).map { _ in Float(g.nextNormal()) * 0.05 }
                try buffer.add(delta, weight: Float(k + 1) * 7)
                try reference.add(delta, weight: Float(k + 1) * 7)
            }
            fusedModel = buffer.takeStep(on: fusedModel, optimizer: optimizer, state: &fusedState)
            AggregationStep.apply(model: &referenceModel, meanDelta: reference.weightedMean(), optimizer: optimizer, state: &referenceState)
            reference.reset()
            #expect(fusedModel.map(\.bitPattern) == referenceModel.map(\.bitPattern), "\(kind) step \(step)")
            #expect(fusedState == referenceState)
            #expect(buffer.count == 0 && buffer.sum.allSatisfy { $0 == 0 })
        }
    }

    /// The state is bounded by the model: two model-sized arrays at most (SGD without momentum: none).
    @Test func stateIsBoundedByTheModelSize() {
        let n = 1_000
        #expect(ServerSGD(learningRate: 1, momentum: 0).makeState(parameterCount: n).footprint == 0)
        #expect(ServerSGD(learningRate: 1, momentum: 0.5).makeState(parameterCount: n).footprint == n)
        for kind in [ServerOptimizerKind.adam, .yogi, .adagrad] {
            let state = ServerOptimizerSettings.defaults(for: kind).makeOptimizer().makeState(parameterCount: n)
            #expect(state.footprint == 2 * n)
            let tau: Float = 1e-3
            #expect(state.first.allSatisfy { $0 == 0 } && state.second.allSatisfy { $0 == tau * tau }, "m = 0, v = τ²")
        }
    }

    @Test func defaultsAndValidation() throws {
        let adam = ServerOptimizerSettings.defaults(for: .adam)
        #expect(adam.learningRate == 1e-2 && adam.beta1 == 0.9 && adam.beta2 == 0.99 && adam.tau == 1e-3)
        #expect(ServerOptimizerSettings.defaults(for: .yogi).learningRate == 1e-2)
        #expect(ServerOptimizerSettings.defaults(for: .adagrad).learningRate == 1e-1)
        #expect(ServerOptimizerSettings.defaults(for: .sgd) == .sgd(learningRate: 1, momentum: 0))
        #expect(ServerOptimizerSettings.defaults(for: .adam).makeOptimizer() is FedAdam)
        #expect(ServerOptimizerSettings.defaults(for: .yogi).makeOptimizer() is FedYogi)
        #expect(ServerOptimizerSettings.defaults(for: .adagrad).makeOptimizer() is FedAdagrad)
        #expect(ServerOptimizerSettings.defaults(for: .sgd).makeOptimizer() is ServerSGD)
        for kind in ServerOptimizerKind.allCases { try ServerOptimizerSettings.defaults(for: kind).validate() }
        var bad = adam
        bad.tau = 0
        #expect(throws: StrataCoreError.self) { try bad.validate() }
        bad = adam
        bad.beta2 = 1
        #expect(throws: StrataCoreError.self) { try bad.validate() }
        bad = adam
        bad.learningRate = .infinity
        #expect(throws: StrataCoreError.self) { try bad.validate() }
        #expect(throws: StrataCoreError.self) { try ServerOptimizerSettings.sgd(learningRate: 1, momentum: 1).validate() }
    }
}

// MARK: - Optimisers inside the rules

private func adamSettings(k: Int = 1) -> RuleSettings {
    var s = RuleSettings()
    s.bufferSize = k
    s.bufferTimeout = nil
    s.staleness = .constant
    s.robustness.clipMultiple = nil
    s.serverOptimizer = ServerOptimizerSettings(kind: .adam, learningRate: 0.1, beta1: 0.9, beta2: 0.99, tau: 1e-3)
    return s
}

private func update(_ task: Int64, _ client: String, lane: Int = 0, base: Int64, _ delta: [Float], samples: Int64 = 10) -> RuleUpdate {
    RuleUpdate(taskID: task, clientID: client, lane: lane, baseVersion: base, sampleCount: samples, delta: delta)
}

@Suite struct OptimizerInRulesTests {
    /// FedBuff with FedAdam: the rule's steps are the reference's steps.
    @Test func fedBuffStepsWithFedAdam() throws {
        var rule = FedBuffRule(settings: adamSettings(), parameters: x0)
        let reference = try #require(references[.adam])
        for (t, delta) in deltas.enumerated() {
            guard case .folded = rule.accept(update(Int64(t + 1), "a", base: Int64(t), delta), now: 0) else {
                Issue.record("step \(t + 1) refused")
                return
            }
            let out = rule.aggregations(now: 0)
            #expect(out.count == 1)
            #expect(close(rule.globalParameters, reference.x[t]), "step \(t + 1): \(rule.globalParameters)")
        }
    }

    /// A restart restores the models, not the optimiser state: the next step is a first step from the
    /// restored model (m = 0, v = τ²), the same as a fresh coordinator's.
    @Test func aRestartStartsTheOptimiserStateAfresh() throws {
        var running = FedBuffRule(settings: adamSettings(), parameters: x0)
        for (t, delta) in deltas.prefix(2).enumerated() {
            _ = running.accept(update(Int64(t + 1), "a", base: Int64(t), delta), now: 0)
            _ = running.aggregations(now: 0)
        }
        var restarted = FedBuffRule(settings: adamSettings(), parameters: x0)
        restarted.restore(globalVersion: running.globalVersion, global: running.globalParameters,
                          lanes: [running.lane(0)])
        #expect(restarted.lanes[0].serverOptimizerState == FedAdam(learningRate: 0.1).makeState(parameterCount: 3))
        _ = restarted.accept(update(3, "a", base: 2, deltas[2]), now: 0)
        _ = restarted.aggregations(now: 0)
        var expected = running.globalParameters
        let fresh = FedAdam(learningRate: 0.1)
        var freshState = fresh.makeState(parameterCount: 3)
        AggregationStep.apply(model: &expected, meanDelta: deltas[2], optimizer: fresh, state: &freshState)
        #expect(restarted.globalParameters == expected)
        // A first step moves each coordinate by at most η·(1 − β1)/√(1 − β2) = η here: bounded, however large Δ̄.
        for (after, before) in zip(restarted.globalParameters, running.globalParameters) {
            #expect(abs(after - before) <= 0.1 + 1e-6)
        }
    }

    /// Strata's tiers each keep their own optimiser state: a step of tier 0 leaves tier 1's state alone.
    @Test func eachTierKeepsItsOwnState() {
        var s = adamSettings()
        s.crossTierWeighting = .inverse
        var rule = StrataRule(settings: s, parameters: [0, 0])
        rule.tiersFormed(count: 2)
        let clients = [ClientView(id: "fast", tier: 0), ClientView(id: "slow", tier: 1)]
        _ = rule.schedule(idle: clients, connected: clients, now: 0)
        _ = rule.accept(update(1, "fast", lane: 0, base: 0, [1, -1]), now: 0)
        #expect(rule.aggregations(now: 0).count == 1)
        #expect(approxEqual(rule.lanes[0].serverOptimizerState.first, [0.1, -0.1]))
        #expect(rule.lanes[1].serverOptimizerState == FedAdam(learningRate: 0.1).makeState(parameterCount: 2))
        _ = rule.accept(update(2, "slow", lane: 1, base: 0, [2, 0]), now: 0)
        #expect(rule.aggregations(now: 0).count == 1)
        #expect(approxEqual(rule.lanes[0].serverOptimizerState.first, [0.1, -0.1]), "tier 1's step did not touch tier 0's state")
        #expect(approxEqual(rule.lanes[1].serverOptimizerState.first, [0.2, 0]))
    }

    /// Every rule that steps with the server optimiser steps with the configured one.
    @Test(arguments: [AggregationMode.fedavg, .tifl, .fedat, .fedbuff, .strata])
    func everyStepRuleUsesTheConfiguredOptimizer(mode: AggregationMode) {
        var s = adamSettings()
        s.crossTierWeighting = .inverse
        var rule = mode.makeRule(settings: s, parameters: [0, 0])
        let clients = [ClientView(id: "a", tier: nil)]
        let assigned = rule.schedule(idle: clients, connected: clients, now: 0)
        #expect(assigned.count == 1)
        _ = rule.accept(update(1, "a", base: 0, [1, -1]), now: 0)
        #expect(rule.aggregations(now: 0).count == 1)
        // A first FedAdam step with Δ̄ = (1, −1): m = 0.1·Δ̄, v = 0.99·τ² + 0.01, x = 0.1·m/(√v + τ).
        let v = (0.99 * 1e-6 + 0.01).squareRoot()
        let expected = Float(0.1 * 0.1 / (v + 1e-3))
        #expect(approxEqual(rule.globalParameters, [expected, -expected], tolerance: 1e-6), "\(mode): \(rule.globalParameters)")
    }
}

// MARK: - Rolling back

@Suite struct RollbackTests {
    @Test func aRollbackRestoresEveryModelDropsTheBufferAndRefusesOlderBases() {
        var s = RuleSettings()
        s.bufferSize = 2
        s.bufferTimeout = nil
        s.staleness = .constant
        s.robustness.clipMultiple = nil
        s.serverOptimizer = .sgd(learningRate: 1, momentum: 0.5)
        var rule = FedBuffRule(settings: s, parameters: [0, 0])
        _ = rule.accept(update(1, "a", base: 0, [1, 1]), now: 0)
        _ = rule.accept(update(2, "b", base: 0, [3, 3]), now: 0)
        #expect(rule.aggregations(now: 0).count == 1)          // version 1: (2, 2)
        _ = rule.accept(update(3, "a", base: 1, [5, 5]), now: 0)   // waits in the open buffer
        let rollback = rule.rollBack(to: [0.5, -0.5], stepScale: 0.25, discardingFrom: nil)
        #expect(rollback.discarded.map(\.taskID) == [3])
        #expect(rollback.outcomes.count == 1)
        let restored = rollback.outcomes[0]
        #expect(restored.globalVersion == 2 && restored.trigger == "rollback" && restored.updates.isEmpty)
        #expect(restored.globalParameters == [0.5, -0.5] && restored.laneParameters == [0.5, -0.5])
        #expect(rule.globalParameters == [0.5, -0.5] && rule.stepScale == 0.25)
        #expect(rule.lane(0).version == 2)
        #expect(rule.lanes[0].serverOptimizerState.first == [0, 0], "the velocity of the diverged steps is gone")
        #expect(rule.aggregations(now: 0).isEmpty, "the open buffer was dropped")
        // An update trained on a model before the rollback is refused as too stale, whatever its staleness.
        guard case .refused(.tooStale, let why) = rule.accept(update(4, "b", base: 1, [1, 1]), now: 0) else {
            Issue.record("an update based on version 1 was not refused")
            return
        }
        #expect(why.contains("divergence guard"))
        // The next step runs at a quarter of the configured step: (0.5, −0.5) + 0.25·1·(2, 2).
        _ = rule.accept(update(5, "a", base: 2, [1, 1]), now: 0)
        _ = rule.accept(update(6, "b", base: 2, [3, 3]), now: 0)
        let next = rule.aggregations(now: 0)
        #expect(next.map(\.globalVersion) == [3])
        #expect(approxEqual(rule.globalParameters, [1, 0]))
    }

    /// The caller dropped outcomes (a step made a non-finite model): the restored model takes the first
    /// dropped version's place, so the versions it persists stay dense.
    @Test func droppedOutcomesLeaveNoGapInTheVersions() {
        var s = RuleSettings()
        s.bufferSize = 1
        s.staleness = .constant
        s.robustness.clipMultiple = nil
        var rule = FedBuffRule(settings: s, parameters: [0, 0])
        _ = rule.accept(update(1, "a", base: 0, [1, 1]), now: 0)
        let good = rule.aggregations(now: 0)
        _ = rule.accept(update(2, "a", base: 1, [.greatestFiniteMagnitude, 1]), now: 0)
        _ = rule.accept(update(3, "a", base: 1, [.greatestFiniteMagnitude, 1]), now: 0)   // queued (one per buffer)
        let bad = rule.aggregations(now: 0)
        #expect(good.map(\.globalVersion) == [1] && bad.map(\.globalVersion) == [2])
        let rollback = rule.rollBack(to: good[0].globalParameters, stepScale: 0.5, discardingFrom: bad[0].globalVersion)
        #expect(rollback.outcomes.map(\.globalVersion) == [2])
        #expect(rollback.outcomes[0].globalParameters == [1, 1])
        #expect(rollback.discarded.map(\.taskID) == [3], "the queued update; the dropped outcome's are the caller's")
    }

    /// Tiered rules: one outcome per tier, every tier model restored, and versions continue densely.
    @Test(arguments: [AggregationMode.strata, .fedat])
    func tieredRulesRestoreEveryTier(mode: AggregationMode) {
        var s = RuleSettings.defaults(for: mode)
        s.bufferTimeout = nil
        s.robustness.clipMultiple = nil
        var rule = mode.makeRule(settings: s, parameters: [0, 0])
        rule.tiersFormed(count: 3)
        let clients = (0..<3).map { ClientView(id: "c\($0)", tier: $0) }
        _ = rule.schedule(idle: clients, connected: clients, now: 0)
        _ = rule.accept(update(1, "c0", lane: 0, base: 0, [1, 1]), now: 0)
        _ = rule.aggregations(now: 0)
        let before = rule.globalVersion
        let rollback = rule.rollBack(to: [7, 7], stepScale: 0.5, discardingFrom: nil)
        #expect(rollback.outcomes.map(\.lane) == [0, 1, 2])
        #expect(rollback.outcomes.map(\.globalVersion) == [before + 1, before + 2, before + 3])
        #expect(rollback.outcomes.allSatisfy { $0.laneParameters == [7, 7] && $0.globalParameters == [7, 7] })
        for lane in 0..<3 { #expect(rule.lane(lane).parameters == [7, 7]) }
        #expect(rule.globalParameters == [7, 7])
    }

    /// FedAsync mixes at once: a mixed update whose outcome was not returned yet is dropped and its
    /// version reused.
    @Test func fedAsyncDropsUnreturnedMixes() {
        var s = RuleSettings()
        s.robustness.clipMultiple = nil
        s.mixingAlpha = 1
        s.staleness = .constant
        var rule = FedAsyncRule(settings: s, parameters: [0, 0])
        _ = rule.accept(update(1, "a", base: 0, [1, 1]), now: 0)
        #expect(rule.aggregations(now: 0).map(\.globalVersion) == [1])
        _ = rule.accept(update(2, "a", base: 1, [1, 1]), now: 0)   // version 2, not returned yet
        let rollback = rule.rollBack(to: [1, 1], stepScale: 0.5, discardingFrom: nil)
        #expect(rollback.outcomes.map(\.globalVersion) == [2])
        #expect(rollback.discarded.map(\.taskID) == [2])
        #expect(rule.aggregations(now: 0).isEmpty)
        // The model's version moved past the dropped one (3): a task handed out at version 2 is refused.
        #expect(rule.lane(0).version == 3)
        guard case .refused(.tooStale, _) = rule.accept(update(3, "a", base: 2, [2, 2]), now: 0) else {
            Issue.record("an update based on the dropped version was folded")
            return
        }
        // Mixing now runs at α·0.5: x = 0.5·(1, 1) + 0.5·((1, 1) + (2, 2)).
        _ = rule.accept(update(4, "a", base: 3, [2, 2]), now: 0)
        #expect(approxEqual(rule.globalParameters, [2, 2]))
    }
}
