import Testing
@testable import StrataCore

// The divergence guard alone: evaluations, refusals, non-finite models and time in; decisions out.

private func recovery(_ verdict: DivergenceGuard.Verdict) -> DivergenceGuard.Recovery? {
    if case .recover(let r) = verdict { return r }
    return nil
}

@Suite struct DivergenceGuardTests {
    @Test func theBestIsTheLowestCountedLoss() {
        var g = DivergenceGuard()
        #expect(g.evaluated(version: 1, loss: 2.0, now: 0) == .newBest)
        #expect(g.evaluated(version: 2, loss: 1.0, now: 1) == .newBest)
        #expect(g.evaluated(version: 3, loss: 1.5, now: 2) == .none)
        #expect(g.best == DivergenceGuard.Best(version: 2, loss: 1.0))
        #expect(g.stepScale == 1 && g.recoveries == 0)
    }

    /// Loss above 3 × the best in two evaluations in a row: step back to the best, halve the step.
    @Test func aLossRiseInARowStepsBackAndHalvesTheStep() throws {
        var g = DivergenceGuard()
        _ = g.evaluated(version: 1, loss: 0.5, now: 0)
        #expect(g.evaluated(version: 2, loss: 1.6, now: 1) == .none, "one rise is not enough")
        #expect(g.evaluated(version: 3, loss: 1.4, now: 2) == .none, "below 3 x 0.5: the count restarts")
        #expect(g.evaluated(version: 4, loss: 1.6, now: 3) == .none)
        let verdict1 = g.evaluated(version: 5, loss: 40, now: 4)

        let r = try #require(recovery(verdict1))
        #expect(r.cause == .lossRose(version: 5, loss: 40, best: .init(version: 1, loss: 0.5), factor: 3, evaluations: 2))
        #expect(r.target == DivergenceGuard.Best(version: 1, loss: 0.5))
        #expect(r.previousStepScale == 1 && r.stepScale == 0.5 && r.count == 1)
        #expect(r.cause.label == "loss-rose")
        #expect(r.cause.description.contains("40") && r.cause.description.contains("0.5"))
    }

    /// After a step back, evaluations of versions made before it judge models that are gone: they neither
    /// trigger nor count towards the next rise (but a better old version still becomes the best).
    @Test func evaluationsOfVersionsBeforeTheStepBackAreHistory() throws {
        var g = DivergenceGuard()
        _ = g.evaluated(version: 1, loss: 1, now: 0)
        _ = g.evaluated(version: 2, loss: 10, now: 1)
        let verdict2 = g.evaluated(version: 3, loss: 10, now: 2)

        _ = try #require(recovery(verdict2))
        g.rolledBack(firstVersion: 6, now: 2)
        #expect(g.evaluated(version: 4, loss: 100, now: 3) == .none)
        #expect(g.evaluated(version: 5, loss: .infinity, now: 3) == .none)
        #expect(g.evaluated(version: 6, loss: 1, now: 3) == .none, "the restored model scores the best's loss")
        #expect(g.evaluated(version: 7, loss: 3.5, now: 4) == .none)
        let verdict3 = g.evaluated(version: 8, loss: 3.5, now: 5)

        let again = try #require(recovery(verdict3))
        #expect(again.previousStepScale == 0.5 && again.stepScale == 0.25 && again.count == 2)
    }

    @Test func theStepNeverGoesBelowTheFloor() throws {
        var policy = DivergencePolicy()
        policy.risingEvaluations = 1
        policy.minimumStepScale = 0.2
        var g = DivergenceGuard(policy: policy)
        _ = g.evaluated(version: 1, loss: 1, now: 0)
        var scales: [Double] = []
        for v in 2...6 {
            let verdict4 = g.evaluated(version: Int64(v), loss: 5, now: Double(v))
            let r = try #require(recovery(verdict4))
            g.rolledBack(firstVersion: Int64(v) + 1, now: Double(v))
            scales.append(r.stepScale)
        }
        #expect(scales == [0.5, 0.25, 0.2, 0.2, 0.2])
    }

    @Test func aNonFiniteLossStepsBackAtOnce() throws {
        var g = DivergenceGuard()
        _ = g.evaluated(version: 1, loss: 0.3, now: 0)
        let verdict5 = g.evaluated(version: 2, loss: .nan, now: 1)

        let r = try #require(recovery(verdict5))
        #expect(r.cause == .nonFiniteLoss(version: 2) && r.target?.version == 1)
    }

    @Test func aNonFiniteModelStepsBackAtOnceEvenBeforeAnyEvaluation() throws {
        var g = DivergenceGuard()
        let result6 = g.nonFiniteModel(version: 3, now: 0)

        let r = try #require(result6)
        #expect(r.cause == .nonFiniteModel(version: 3) && r.target == nil, "nil: the initial model")
        #expect(r.stepScale == 0.5)
    }

    /// Ten divergent refusals within ten seconds from more than half of the agents sending updates.
    @Test func refusalsPilingUpFromMostAgentsStepBack() throws {
        var g = DivergenceGuard()
        for i in 0..<9 {
            #expect(g.updateChecked(client: i % 2 == 0 ? "a" : "b", divergent: true, dispatchedAt: 0, now: Double(i)) == nil)
        }
        _ = g.updateChecked(client: "c", divergent: false, dispatchedAt: 0, now: 9)
        let result7 = g.updateChecked(client: "a", divergent: true, dispatchedAt: 0, now: 9.5)

        let r = try #require(result7)
        #expect(r.cause == .refusalsPiledUp(refusals: 10, window: 10, refusedAgents: 2, activeAgents: 3))
        #expect(r.cause.label == "refusals")
    }

    @Test func refusalsSpreadOverMoreThanTheWindowDoNot() {
        var g = DivergenceGuard()
        for i in 0..<30 {
            #expect(g.updateChecked(client: "a", divergent: true, dispatchedAt: 0, now: Double(i) * 1.2) == nil, "refusal \(i)")
        }
    }

    /// A minority of agents sending absurd updates is not a divergence, however many they send.
    @Test func aMinorityOfRefusedAgentsDoesNot() {
        var g = DivergenceGuard()
        for i in 0..<100 {
            let t = Double(i) * 0.05
            _ = g.updateChecked(client: "honest-1", divergent: false, dispatchedAt: 0, now: t)
            _ = g.updateChecked(client: "honest-2", divergent: false, dispatchedAt: 0, now: t)
            #expect(g.updateChecked(client: "attacker", divergent: true, dispatchedAt: 0, now: t) == nil)
        }
    }

    /// Updates of tasks handed out before a step back were trained on the models stepped back from.
    @Test func refusalsOfTasksFromBeforeTheStepBackAreIgnored() throws {
        var g = DivergenceGuard()
        let result8 = g.nonFiniteModel(version: 1, now: 100)

        let first = try #require(result8)
        g.rolledBack(firstVersion: 2, now: 100)
        #expect(first.count == 1)
        for i in 0..<20 {
            #expect(g.updateChecked(client: "a", divergent: true, dispatchedAt: 99, now: 100 + Double(i) * 0.1) == nil)
        }
        var second: DivergenceGuard.Recovery?
        for i in 0..<10 { second = g.updateChecked(client: "a", divergent: true, dispatchedAt: 101, now: 102 + Double(i) * 0.1) }
        #expect(second?.count == 2)
    }

    @Test func offDecidesNothing() {
        var policy = DivergencePolicy()
        policy.enabled = false
        var g = DivergenceGuard(policy: policy)
        #expect(g.evaluated(version: 1, loss: 1, now: 0) == .none)
        #expect(g.evaluated(version: 2, loss: .infinity, now: 0) == .none)
        #expect(g.nonFiniteModel(version: 3, now: 0) == nil)
        for i in 0..<50 { #expect(g.updateChecked(client: "a", divergent: true, dispatchedAt: 0, now: Double(i) * 0.01) == nil) }
    }

    @Test func theLossRuleCanBeOffAndNonFiniteLossesStillCount() {
        var policy = DivergencePolicy()
        policy.lossFactor = nil
        var g = DivergenceGuard(policy: policy)
        _ = g.evaluated(version: 1, loss: 1, now: 0)
        for v in 2...5 { #expect(g.evaluated(version: Int64(v), loss: 1e9, now: 0) == .none) }
        #expect(recovery(g.evaluated(version: 6, loss: .infinity, now: 0)) != nil)
    }

    @Test func policyValidation() throws {
        try DivergencePolicy().validate()
        var p = DivergencePolicy()
        p.lossFactor = 1
        #expect(throws: StrataCoreError.self) { try p.validate() }
        p = DivergencePolicy()
        p.stepFactor = 0
        #expect(throws: StrataCoreError.self) { try p.validate() }
        p = DivergencePolicy()
        p.minimumStepScale = 2
        #expect(throws: StrataCoreError.self) { try p.validate() }
        p = DivergencePolicy()
        p.refusals = 0
        #expect(throws: StrataCoreError.self) { try p.validate() }
    }
}
