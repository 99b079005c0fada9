import Testing
@testable import StrataCore

// Every aggregation rule driven through a small, hand-computed example. Models have two parameters; the
// expected values are worked out in the comments and compared with a tolerance of 1e-5.

// MARK: - Helpers

private func update(_ task: Int64, _ client: String, lane: Int = 0, base: Int64, n: Int64, _ delta: [Float]) -> RuleUpdate {
    RuleUpdate(taskID: task, clientID: client, lane: lane, baseVersion: base, sampleCount: n, delta: delta)
}

private func views(_ ids: String...) -> [ClientView] { ids.map { ClientView(id: $0, tier: nil) } }

private func client(_ id: String, tier: Int?) -> ClientView { ClientView(id: id, tier: tier) }

private func close(_ a: Double, _ b: Double, tolerance: Double = 1e-5) -> Bool { abs(a - b) <= tolerance }

private func close(_ a: [Double], _ b: [Double], tolerance: Double = 1e-5) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tolerance }
}

/// (staleness, weight) of a folded update; nil if refused.
private func foldedAs(_ d: UpdateDisposition) -> (staleness: Int64, weight: Double)? {
    if case .folded(let s, let w) = d { return (s, w) }
    return nil
}

private func refusal(_ d: UpdateDisposition) -> RefusalReason? {
    if case .refused(let r, _) = d { return r }
    return nil
}

private let sqrt2 = 2.0.squareRoot()

// MARK: - FedBuff

/// The buffer scenario shared by FedBuff and by Strata before tiers exist (K = 2, η_g = 0.5, s = fedbuff).
///
/// Buffer 1 at version 0: a (n=10, Δ=[2,0]) and b (n=10, Δ=[0,2]), both fresh, weights 10 and 10:
///   Δ̄ = [1, 1]; x1 = [0,0] + 0.5·[1,1] = [0.5, 0.5].
/// Buffer 2 at version 1: c (n=10, base 1, σ=0, Δ=[1,0]) weight 10·1 = 10; d (n=30, base 0, σ=1, Δ=[0,1])
///   weight 30·(1/√(1+1)) = 15√2 ≈ 21.2132034.
///   Δ̄ = [10, 15√2] / (10 + 15√2) = [(3√2−2)/7, 1 − (3√2−2)/7] ≈ [0.3203772, 0.6796228]
///   x2 = [0.5,0.5] + 0.5·Δ̄ ≈ [0.6601886, 0.8398114].
private func runBufferScenario<R: AggregationRule>(_ rule: inout R) {
    let four = views("a", "b", "c", "d")
    let assigned = rule.schedule(idle: four, connected: four, now: 0)
    #expect(assigned == ["a", "b", "c", "d"].map { Assignment(clientID: $0, lane: 0) })

    #expect(rule.accept(update(1, "a", base: 0, n: 10, [2, 0]), now: 0) == .folded(staleness: 0, weight: 10))
    #expect(rule.aggregations(now: 0).isEmpty, "one update of K = 2")
    #expect(rule.accept(update(2, "b", base: 0, n: 10, [0, 2]), now: 1) == .folded(staleness: 0, weight: 10))
    let first = rule.aggregations(now: 1)
    #expect(first.count == 1)
    #expect(approxEqual(first.first?.globalParameters ?? [], [0.5, 0.5]))
    #expect(first.first?.globalVersion == 1)
    #expect(rule.globalVersion == 1 && rule.lane(0).version == 1)

    #expect(rule.accept(update(3, "c", base: 1, n: 10, [1, 0]), now: 2) == .folded(staleness: 0, weight: 10))
    let stale = foldedAs(rule.accept(update(4, "d", base: 0, n: 30, [0, 1]), now: 3))
    #expect(stale?.staleness == 1)
    #expect(close(stale?.weight ?? 0, 15 * sqrt2))

    let second = rule.aggregations(now: 3)
    #expect(second.count == 1)
    guard let out = second.first else { return }
    let meanX = (3 * sqrt2 - 2) / 7      // ≈ 0.3203772
    let expected: [Float] = [Float(0.5 + 0.5 * meanX), Float(0.5 + 0.5 * (1 - meanX))]
    #expect(approxEqual(expected, [0.6601886, 0.8398114]))   // the hand value above
    #expect(approxEqual(out.globalParameters, expected))
    #expect(approxEqual(out.laneParameters, expected))
    #expect(approxEqual(rule.globalParameters, expected))
    #expect(out.lane == 0 && out.laneVersion == 2 && out.globalVersion == 2)
    #expect(out.trigger == "buffer")
    #expect(out.updates.map(\.taskID) == [3, 4])
    #expect(out.updates.map(\.clientID) == ["c", "d"])
    #expect(out.updates.map(\.staleness) == [0, 1])
    #expect(out.updates.map(\.baseVersion) == [1, 0])
    #expect(close(out.updates.map(\.weight), [10, 15 * sqrt2]))
    #expect(close(out.totalWeight, 10 + 15 * sqrt2))
    #expect(out.meanStaleness == 0.5)
    #expect(out.laneWeights == [1])
    #expect(out.combinedLaneVersions == [2])
    #expect(rule.aggregations(now: 100).isEmpty, "the buffer was emptied")
}

/// The rules' arithmetic without the adaptive norm bound (RobustnessTests checks that): with a handful of
/// agents it would clip half of these hand-computed deltas.
private func unclipped(_ settings: RuleSettings = RuleSettings()) -> RuleSettings {
    var s = settings
    s.robustness.clipMultiple = nil
    return s
}

private func bufferSettings() -> RuleSettings {
    var s = unclipped()
    s.bufferSize = 2
    s.bufferTimeout = nil
    s.staleness = .fedBuff
    s.serverOptimizer = ServerOptimizerSettings.sgd(learningRate: 0.5, momentum: 0)
    return s
}

@Suite struct FedBuffRuleTests {
    @Test func weightedMeanWithStalenessAndServerLearningRate() {
        var rule = FedBuffRule(settings: bufferSettings(), parameters: [0, 0])
        #expect(rule.mode == .fedbuff && rule.laneCount == 1)
        runBufferScenario(&rule)
    }

    @Test func updateStalerThanTheLimitIsRefused() {
        // K = 1, η_g = 1, constant s: every update steps at once.
        var s = RuleSettings()
        s.bufferSize = 1
        s.staleness = .constant
        s.maxStaleness = 1
        var rule = FedBuffRule(settings: s, parameters: [0, 0])
        // v0 → v1: x = [1, 0].
        #expect(foldedAs(rule.accept(update(1, "a", base: 0, n: 1, [1, 0]), now: 0)) != nil)
        #expect(rule.aggregations(now: 0).count == 1)
        // σ = 1 ≤ 1 is still folded: v1 → v2, x = [1, 1].
        #expect(rule.accept(update(2, "b", base: 0, n: 1, [0, 1]), now: 0) == .folded(staleness: 1, weight: 1))
        #expect(rule.aggregations(now: 0).count == 1)
        // σ = 2 > 1: refused, nothing to aggregate, model unchanged.
        #expect(refusal(rule.accept(update(3, "c", base: 0, n: 1, [5, 5]), now: 0)) == .tooStale)
        #expect(rule.aggregations(now: 0).isEmpty)
        #expect(rule.globalVersion == 2)
        #expect(approxEqual(rule.globalParameters, [1, 1]))
    }

    @Test func bufferTimeoutStepsWithOneUpdate() {
        var s = bufferSettings()
        s.bufferTimeout = 10
        var rule = FedBuffRule(settings: s, parameters: [0, 0])
        // Buffer opened at t = 3 with one update of K = 2.
        #expect(foldedAs(rule.accept(update(1, "a", base: 0, n: 4, [1, -1]), now: 3)) != nil)
        #expect(rule.aggregations(now: 12).isEmpty, "9 s < 10 s")
        let out = rule.aggregations(now: 13)
        #expect(out.count == 1)
        // Δ̄ = [1, −1]; x = 0.5·[1, −1] = [0.5, −0.5].
        #expect(out.first?.trigger == "timeout")
        #expect(out.first?.updates.count == 1)
        #expect(out.first?.updates.first?.weight == 4)
        #expect(approxEqual(out.first?.globalParameters ?? [], [0.5, -0.5]))
        #expect(rule.aggregations(now: 100).isEmpty)
    }
}

// MARK: - FedAsync

@Suite struct FedAsyncRuleTests {
    /// x0 = [1, 2], α = 0.5.
    /// Update 1 (base 0, σ=0, Δ=[2,0]): a = 0.5, x_new = [3,2], x1 = 0.5·[1,2] + 0.5·[3,2] = [2, 2].
    /// Update 2 (base 0, σ=1, Δ=[0,4]): x_τ = x0 = [1,2] (from history, not the current [2,2]), x_new = [1,6].
    func run(staleness: StalenessFunction, secondAlpha: Double, expected: [Float]) {
        var s = RuleSettings()
        s.mixingAlpha = 0.5
        s.staleness = staleness
        var rule = FedAsyncRule(settings: s, parameters: [1, 2])
        #expect(rule.mode == .fedasync)
        #expect(rule.schedule(idle: views("a", "b"), connected: views("a", "b"), now: 0).count == 2)

        #expect(rule.accept(update(1, "a", base: 0, n: 7, [2, 0]), now: 0) == .folded(staleness: 0, weight: 0.5))
        let first = rule.aggregations(now: 0)
        #expect(first.count == 1)
        #expect(first.first?.trigger == "update")
        #expect(first.first?.globalVersion == 1)
        #expect(approxEqual(first.first?.globalParameters ?? [], [2, 2]))

        let d = foldedAs(rule.accept(update(2, "b", base: 0, n: 7, [0, 4]), now: 1))
        #expect(d?.staleness == 1)
        #expect(close(d?.weight ?? -1, secondAlpha))
        let second = rule.aggregations(now: 1)
        #expect(second.count == 1)
        #expect(second.first?.globalVersion == 2)
        #expect(second.first?.updates.map(\.taskID) == [2])
        #expect(approxEqual(second.first?.globalParameters ?? [], expected))
        #expect(approxEqual(rule.globalParameters, expected))
        #expect(rule.aggregations(now: 2).isEmpty)
    }

    @Test func constantStaleness() {
        // a = 0.5·1 = 0.5: x2 = 0.5·[2,2] + 0.5·[1,6] = [1.5, 4]   (current model as base would give [2, 4]).
        run(staleness: .constant, secondAlpha: 0.5, expected: [1.5, 4])
    }

    @Test func polynomialStaleness() {
        // s(1) = (1+1)^−1 = 1/2, a = 0.25: x2 = 0.75·[2,2] + 0.25·[1,6] = [1.75, 3].
        run(staleness: .polynomial(exponent: 1), secondAlpha: 0.25, expected: [1.75, 3])
    }

    @Test func oneOutcomePerUpdateInOrder() {
        var s = RuleSettings()
        s.mixingAlpha = 0.5
        s.staleness = .constant
        var rule = FedAsyncRule(settings: s, parameters: [1, 2])
        _ = rule.accept(update(1, "a", base: 0, n: 1, [2, 0]), now: 0)
        _ = rule.accept(update(2, "b", base: 0, n: 1, [0, 4]), now: 0)
        let outs = rule.aggregations(now: 0)
        #expect(outs.map(\.globalVersion) == [1, 2])
        #expect(outs.map { $0.updates.map(\.taskID) } == [[1], [2]])
        #expect(approxEqual(outs.last?.globalParameters ?? [], [1.5, 4]))
    }
}

// MARK: - FedAvg

@Suite struct FedAvgRuleTests {
    @Test func everyConnectedClientMustBeIdleWhenCIsZero() {
        var rule = FedAvgRule(settings: RuleSettings(), parameters: [1, 1])
        let all = views("a", "b", "c")
        #expect(rule.schedule(idle: views("a", "b"), connected: all, now: 0).isEmpty, "c is busy")
        let assigned = rule.schedule(idle: all, connected: all, now: 1)
        #expect(Set(assigned) == Set(["a", "b", "c"].map { Assignment(clientID: $0, lane: 0) }))
        #expect(rule.schedule(idle: all, connected: all, now: 2).isEmpty, "a round is open")
    }

    @Test func sampleWeightedAverageOfClientModels() {
        var rule = FedAvgRule(settings: unclipped(), parameters: [1, 1])
        let all = views("a", "b", "c")
        _ = rule.schedule(idle: all, connected: all, now: 0)
        // x_a = [2,1] (n=10), x_b = [1,3] (n=30), x_c = [0,0] (n=60):
        // Σ n x / Σ n = (10·[2,1] + 30·[1,3] + 60·[0,0]) / 100 = [50, 100] / 100 = [0.5, 1].
        #expect(rule.accept(update(1, "a", base: 0, n: 10, [1, 0]), now: 1) == .folded(staleness: 0, weight: 10))
        #expect(rule.accept(update(2, "b", base: 0, n: 30, [0, 2]), now: 1) == .folded(staleness: 0, weight: 30))
        #expect(rule.aggregations(now: 1).isEmpty, "still waiting for c")
        #expect(rule.accept(update(3, "c", base: 0, n: 60, [-1, -1]), now: 2) == .folded(staleness: 0, weight: 60))
        let out = rule.aggregations(now: 2)
        #expect(out.count == 1)
        #expect(out.first?.trigger == "round")
        #expect(out.first?.updates.count == 3)
        #expect(approxEqual(out.first?.globalParameters ?? [], [0.5, 1]))
        #expect(rule.globalVersion == 1)
    }

    @Test func updatesOutsideTheRoundAreRefused() {
        var rule = FedAvgRule(settings: RuleSettings(), parameters: [0, 0])
        let ab = views("a", "b")
        _ = rule.schedule(idle: ab, connected: ab, now: 0)
        #expect(refusal(rule.accept(update(9, "z", base: 0, n: 1, [1, 1]), now: 0)) == .roundClosed, "not selected")
        #expect(foldedAs(rule.accept(update(1, "a", base: 0, n: 1, [1, 1]), now: 0)) != nil)
        #expect(refusal(rule.accept(update(2, "a", base: 0, n: 1, [1, 1]), now: 0)) == .roundClosed, "already delivered")
        #expect(foldedAs(rule.accept(update(3, "b", base: 0, n: 1, [1, 1]), now: 0)) != nil)
        #expect(rule.aggregations(now: 0).count == 1)
        // Round 2 is based on version 1: an update based on version 0 belongs to a closed round.
        #expect(rule.schedule(idle: ab, connected: ab, now: 1).count == 2)
        #expect(refusal(rule.accept(update(4, "a", base: 0, n: 1, [1, 1]), now: 1)) == .roundClosed)
        #expect(foldedAs(rule.accept(update(5, "a", base: 1, n: 1, [1, 1]), now: 1)) != nil)
        #expect(approxEqual(rule.globalParameters, [1, 1]))
    }

    @Test func overSelectionClosesAtTheFirstCUpdates() {
        var s = RuleSettings()
        s.clientsPerRound = 2
        s.overSelection = 0.5
        var rule = FedAvgRule(settings: s, parameters: [0, 0])
        let all = views("a", "b", "c")
        // ceil(2·1.5) = 3 selected, the round closes at 2.
        let selected = rule.schedule(idle: all, connected: all, now: 0).map(\.clientID).sorted()
        #expect(selected == ["a", "b", "c"])
        guard selected.count == 3 else { return }
        // First two: n=1 Δ=[2,0], n=3 Δ=[2,4] → Δ̄ = ([2,0] + [6,12]) / 4 = [2, 3].
        #expect(foldedAs(rule.accept(update(1, selected[0], base: 0, n: 1, [2, 0]), now: 1)) != nil)
        #expect(foldedAs(rule.accept(update(2, selected[1], base: 0, n: 3, [2, 4]), now: 1)) != nil)
        // The third arrives before the coordinator asked for aggregations: the round already has its C updates.
        #expect(refusal(rule.accept(update(3, selected[2], base: 0, n: 100, [-9, -9]), now: 1)) == .roundClosed)
        let out = rule.aggregations(now: 1)
        #expect(out.count == 1)
        #expect(out.first?.updates.map(\.taskID) == [1, 2])
        #expect(approxEqual(out.first?.globalParameters ?? [], [2, 3]))
        #expect(refusal(rule.accept(update(3, selected[2], base: 0, n: 100, [-9, -9]), now: 2)) == .roundClosed)
    }

    @Test func deadlineClosesWithWhatArrived() {
        var s = RuleSettings()
        s.roundDeadline = 5
        var rule = FedAvgRule(settings: s, parameters: [1, 1])
        let ab = views("a", "b")
        _ = rule.schedule(idle: ab, connected: ab, now: 10)       // deadline at 15
        #expect(foldedAs(rule.accept(update(1, "a", base: 0, n: 2, [1, 2]), now: 11)) != nil)
        #expect(rule.aggregations(now: 14).isEmpty)
        // b is late: at the deadline the round is over even if the timer has not fired yet.
        #expect(refusal(rule.accept(update(2, "b", base: 0, n: 2, [100, 100]), now: 15)) == .roundClosed)
        let out = rule.aggregations(now: 15)
        #expect(out.count == 1)
        #expect(out.first?.trigger == "deadline")
        #expect(out.first?.updates.map(\.clientID) == ["a"])
        // x = [1,1] + [1,2] = [2, 3].
        #expect(approxEqual(out.first?.globalParameters ?? [], [2, 3]))
    }

    @Test func departedClientIsNotWaitedFor() {
        var rule = FedAvgRule(settings: RuleSettings(), parameters: [0, 0])
        let ab = views("a", "b")
        _ = rule.schedule(idle: ab, connected: ab, now: 0)
        #expect(foldedAs(rule.accept(update(1, "a", base: 0, n: 1, [4, 2]), now: 1)) != nil)
        #expect(rule.aggregations(now: 1).isEmpty)
        rule.clientLeft("b")
        let out = rule.aggregations(now: 2)
        #expect(out.count == 1)
        #expect(out.first?.trigger == "round")
        #expect(out.first?.updates.map(\.clientID) == ["a"])
        #expect(approxEqual(out.first?.globalParameters ?? [], [4, 2]))
    }

    @Test func roundWhoseClientsAllLeftClosesEmpty() {
        var rule = FedAvgRule(settings: RuleSettings(), parameters: [0, 0])
        let ab = views("a", "b")
        _ = rule.schedule(idle: ab, connected: ab, now: 0)
        rule.clientLeft("a")
        rule.clientLeft("b")
        #expect(rule.aggregations(now: 1).isEmpty)
        #expect(rule.globalVersion == 0)
        // The round is gone: a new one opens.
        #expect(rule.schedule(idle: views("c"), connected: views("c"), now: 2) == [Assignment(clientID: "c", lane: 0)])
    }
}

// MARK: - FedAT

@Suite struct FedATRuleTests {
    @Test func tiersRunIndependentRoundsAndCombineWithFedATWeights() {
        var rule = FedATRule(settings: unclipped(), parameters: [0, 0])
        rule.tiersFormed(count: 2)
        #expect(rule.laneCount == 2)
        let all = [client("a", tier: 0), client("b", tier: 0), client("c", tier: 1), client("d", tier: 1)]
        let assigned = rule.schedule(idle: all, connected: all, now: 0)
        #expect(Set(assigned) == [Assignment(clientID: "a", lane: 0), Assignment(clientID: "b", lane: 0),
                                  Assignment(clientID: "c", lane: 1), Assignment(clientID: "d", lane: 1)])

        // Tier 1: only c delivers for now.
        #expect(foldedAs(rule.accept(update(1, "c", lane: 1, base: 0, n: 1, [4, 0]), now: 1)) != nil)
        // A tier-1 client's update for tier 0's round is not part of it.
        #expect(refusal(rule.accept(update(2, "d", lane: 0, base: 0, n: 1, [4, 0]), now: 1)) == .roundClosed)
        // Tier 0: a (n=1, Δ=[3,0]), b (n=3, Δ=[3,4]) → Δ̄ = ([3,0] + [9,12]) / 4 = [3, 3]; x_0 = [3, 3].
        #expect(foldedAs(rule.accept(update(3, "a", lane: 0, base: 0, n: 1, [3, 0]), now: 1)) != nil)
        #expect(foldedAs(rule.accept(update(4, "b", lane: 0, base: 0, n: 3, [3, 4]), now: 1)) != nil)
        let first = rule.aggregations(now: 1)
        #expect(first.count == 1, "tier 1 is still waiting for d")
        // Push of tier 0: T0 = 2, T1 = 1, T = 3; w0 = T1/T = 1/3, w1 = T0/T = 2/3.
        // x = 1/3·[3,3] + 2/3·[0,0] = [1, 1].
        if let out = first.first {
            #expect(out.lane == 0 && out.laneVersion == 1 && out.globalVersion == 1)
            #expect(approxEqual(out.laneParameters, [3, 3]))
            #expect(approxEqual(out.globalParameters, [1, 1]))
            #expect(close(out.laneWeights, [1.0 / 3, 2.0 / 3]))
            #expect(out.combinedLaneVersions == [1, 0])
            #expect(out.trigger == "round")
        }
        // Tier 0 continues from the global model.
        #expect(approxEqual(rule.lane(0).parameters, [1, 1]))
        #expect(rule.lane(0).pushes == 2 && rule.lane(1).pushes == 1)

        // Tier 0 starts its next round while tier 1's round is still open.
        let again = rule.schedule(idle: [all[0], all[1]], connected: all, now: 2)
        #expect(Set(again) == [Assignment(clientID: "a", lane: 0), Assignment(clientID: "b", lane: 0)])
        // Δ̄ = [0, 3]; x_0 = [1,1] + [0,3] = [1, 4].
        _ = rule.accept(update(5, "a", lane: 0, base: 1, n: 1, [0, 3]), now: 3)
        _ = rule.accept(update(6, "b", lane: 0, base: 1, n: 1, [0, 3]), now: 3)
        let second = rule.aggregations(now: 3)
        #expect(second.count == 1)
        // T0 = 3, T1 = 1, T = 4: w0 = 1/4, w1 = 3/4; x = 1/4·[1,4] + 3/4·[0,0] = [0.25, 1].
        if let out = second.first {
            #expect(out.lane == 0 && out.laneVersion == 2 && out.globalVersion == 2)
            #expect(approxEqual(out.globalParameters, [0.25, 1]))
            #expect(close(out.laneWeights, [0.25, 0.75]))
            #expect(out.combinedLaneVersions == [2, 0])
        }

        // Tier 1 finishes: c Δ=[4,0], d Δ=[0,0] (n=1 each) → Δ̄ = [2, 0]; x_1 = [2, 0].
        #expect(foldedAs(rule.accept(update(7, "d", lane: 1, base: 0, n: 1, [0, 0]), now: 4)) != nil)
        let third = rule.aggregations(now: 4)
        #expect(third.count == 1)
        // T0 = 3, T1 = 2, T = 5: w0 = T1/T = 2/5, w1 = T0/T = 3/5.
        // x = 2/5·[0.25,1] + 3/5·[2,0] = [0.1 + 1.2, 0.4] = [1.3, 0.4].
        if let out = third.first {
            #expect(out.lane == 1 && out.laneVersion == 1 && out.globalVersion == 3)
            #expect(approxEqual(out.laneParameters, [2, 0]))
            #expect(approxEqual(out.globalParameters, [1.3, 0.4]))
            #expect(close(out.laneWeights, [0.4, 0.6]))
            #expect(out.combinedLaneVersions == [2, 1])
            #expect(out.updates.map(\.clientID) == ["c", "d"])
        }
        #expect(approxEqual(rule.lane(1).parameters, [1.3, 0.4]))
        #expect(approxEqual(rule.lane(0).parameters, [0.25, 1]), "tier 0 is not rebased by tier 1's push")
        #expect(approxEqual(rule.globalParameters, [1.3, 0.4]))
    }
}

// MARK: - LaneSet

@Suite struct LaneSetTests {
    @Test func fedATWeightsMirrorPushCounts() {
        // T = 5 + 2 + 1 = 8; fastest gets the slowest's count: [1/8, 2/8, 5/8].
        let all = LaneSet.fedATWeights(pushes: [5, 2, 1], active: [0, 1, 2])
        #expect(close(all, [1.0 / 8, 2.0 / 8, 5.0 / 8]))
        #expect(close(all.reduce(0, +), 1))
        // Lane 1 inactive: T = 5 + 1 = 6 over lanes 0 and 2: [1/6, 0, 5/6].
        let partial = LaneSet.fedATWeights(pushes: [5, 2, 1], active: [2, 0])
        #expect(close(partial, [1.0 / 6, 0, 5.0 / 6]))
        #expect(LaneSet.fedATWeights(pushes: [3], active: [0]) == [1])
    }
}

// MARK: - Strata

private func strataSettings(k: Int) -> RuleSettings {
    var s = unclipped()
    s.bufferSize = k
    s.bufferTimeout = nil
    s.staleness = .constant
    return s
}

@Suite struct StrataRuleTests {
    @Test func beforeTiersItIsFedBuffOverOneLane() {
        var rule = StrataRule(settings: bufferSettings(), parameters: [0, 0])
        #expect(rule.mode == .strata && rule.laneCount == 1)
        runBufferScenario(&rule)
    }

    @Test func clientsAreAssignedToTheirTiersLane() {
        var rule = StrataRule(settings: strataSettings(k: 10), parameters: [0, 0])
        rule.tiersFormed(count: 2)
        #expect(rule.laneCount == 2)
        let clients = [client("a", tier: 0), client("c", tier: 1), client("e", tier: nil)]
        let assigned = rule.schedule(idle: clients, connected: clients, now: 0)
        // A client without a tier after formation goes to the slowest tier.
        #expect(assigned == [Assignment(clientID: "a", lane: 0), Assignment(clientID: "c", lane: 1),
                             Assignment(clientID: "e", lane: 1)])
    }

    @Test func tiersStepWithPerTierKAndPushWithFedATWeightsOnModels() {
        // --cross-tier models: FedAT's combination of tier models. K = 10, η_g = 1, s = constant. Tier 0: a, b; tier 1: c.
        var settings = strataSettings(k: 10)
        settings.crossTier = .models
        var rule = StrataRule(settings: settings, parameters: [0, 0])
        rule.tiersFormed(count: 2)
        let a = client("a", tier: 0), b = client("b", tier: 0), c = client("c", tier: 1)
        _ = rule.schedule(idle: [a, b, c], connected: [a, b, c], now: 0)

        // K_0 = min(10, 2 live members) = 2.
        #expect(rule.accept(update(1, "a", lane: 0, base: 0, n: 1, [3, 0]), now: 1) == .folded(staleness: 0, weight: 1))
        #expect(rule.aggregations(now: 1).isEmpty, "1 of K_0 = 2")
        #expect(rule.accept(update(2, "b", lane: 0, base: 0, n: 2, [0, 3]), now: 1) == .folded(staleness: 0, weight: 2))
        let first = rule.aggregations(now: 1)
        #expect(first.count == 1)
        // Δ̄ = (1·[3,0] + 2·[0,3]) / 3 = [1, 2]; x_0 = [1, 2].
        // Push: T0 = 2, T1 = 1: w0 = 1/3, w1 = 2/3; x = 1/3·[1,2] + 2/3·[0,0] = [1/3, 2/3].
        if let out = first.first {
            #expect(out.lane == 0 && out.trigger == "buffer")
            #expect(approxEqual(out.laneParameters, [1, 2]))
            #expect(approxEqual(out.globalParameters, [1.0 / 3, 2.0 / 3]))
            #expect(close(out.laneWeights, [1.0 / 3, 2.0 / 3]))
            #expect(out.combinedLaneVersions == [1, 0])
        }
        #expect(approxEqual(rule.lane(0).parameters, [1.0 / 3, 2.0 / 3]), "the pushing tier is rebased")
        #expect(approxEqual(rule.lane(1).parameters, [0, 0]))

        // K_1 = min(10, 1) = 1: c (Δ=[6,0]) steps tier 1 at once: x_1 = [6, 0].
        // T0 = 2, T1 = 2: w = [1/2, 1/2]; x = 1/2·[1/3,2/3] + 1/2·[6,0] = [19/6, 1/3].
        _ = rule.accept(update(3, "c", lane: 1, base: 0, n: 5, [6, 0]), now: 2)
        let second = rule.aggregations(now: 2)
        #expect(second.count == 1)
        if let out = second.first {
            #expect(out.lane == 1)
            #expect(approxEqual(out.globalParameters, [19.0 / 6, 1.0 / 3]))
            #expect(close(out.laneWeights, [0.5, 0.5]))
            #expect(out.combinedLaneVersions == [1, 1])
        }
        #expect(approxEqual(rule.lane(1).parameters, [19.0 / 6, 1.0 / 3]))

        // Tier 1 disconnects: it is inactive.
        _ = rule.schedule(idle: [a, b], connected: [a, b], now: 3)
        // Tier 0 is still at [1/3, 2/3] (tier 1's push rebased only tier 1).
        // Δ̄ = ([0,3] + [3,0]) / 2 = [1.5, 1.5]; x_0 = [1/3, 2/3] + [1.5, 1.5] = [11/6, 13/6].
        // T0 = 3, only tier 0 active: w = [1, 0]; x = x_0 = [11/6, 13/6]
        // (with tier 1 counted it would be 2/5·x_0 + 3/5·[19/6, 1/3] = [2.6333, 1.0667]).
        _ = rule.accept(update(4, "a", lane: 0, base: 1, n: 1, [0, 3]), now: 4)
        _ = rule.accept(update(5, "b", lane: 0, base: 1, n: 1, [3, 0]), now: 4)
        let third = rule.aggregations(now: 4)
        #expect(third.count == 1)
        if let out = third.first {
            #expect(out.laneWeights == [1, 0])
            #expect(approxEqual(out.globalParameters, [11.0 / 6, 13.0 / 6]))
            #expect(out.combinedLaneVersions == [2, 1])
        }

        // Tier 1 reconnects: it resumes from the current global model.
        #expect(rule.schedule(idle: [c], connected: [a, b, c], now: 5) == [Assignment(clientID: "c", lane: 1)])
        #expect(approxEqual(rule.lane(1).parameters, [11.0 / 6, 13.0 / 6]))
        // c: Δ=[1,1] → x_1 = [17/6, 19/6]; T0 = 3, T1 = 3: w = [1/2, 1/2];
        // x = 1/2·[11/6, 13/6] + 1/2·[17/6, 19/6] = [28/12, 32/12] = [7/3, 8/3].
        _ = rule.accept(update(6, "c", lane: 1, base: 1, n: 1, [1, 1]), now: 6)
        let fourth = rule.aggregations(now: 6)
        #expect(fourth.count == 1)
        #expect(approxEqual(fourth.first?.laneParameters ?? [], [17.0 / 6, 19.0 / 6]))
        #expect(approxEqual(fourth.first?.globalParameters ?? [], [7.0 / 3, 8.0 / 3]))
        #expect(close(fourth.first?.laneWeights ?? [], [0.5, 0.5]))
    }

    @Test func fedAsyncTierMixingGivesOneOutcomePerUpdate() {
        // As FedAsync with constant s and α = 0.5 (see FedAsyncRuleTests): [1,2] → [2,2] → [1.5,4].
        var s = RuleSettings()
        s.crossTier = .models
        s.tierMixing = .fedAsync
        s.mixingAlpha = 0.5
        s.staleness = .constant
        var rule = StrataRule(settings: s, parameters: [1, 2])
        let ab = views("a", "b")
        _ = rule.schedule(idle: ab, connected: ab, now: 0)
        #expect(rule.accept(update(1, "a", base: 0, n: 1, [2, 0]), now: 0) == .folded(staleness: 0, weight: 0.5))
        let first = rule.aggregations(now: 0)
        #expect(first.count == 1 && first.first?.trigger == "update")
        #expect(approxEqual(first.first?.globalParameters ?? [], [2, 2]))
        #expect(rule.accept(update(2, "b", base: 0, n: 1, [0, 4]), now: 1) == .folded(staleness: 1, weight: 0.5))
        let second = rule.aggregations(now: 1)
        #expect(second.count == 1 && second.first?.globalVersion == 2)
        #expect(approxEqual(second.first?.globalParameters ?? [], [1.5, 4]))
        #expect(rule.aggregations(now: 2).isEmpty)
    }

    @Test(arguments: [CrossTierWeighting.fedAT, .inverse])
    func tierStepsEnterTheGlobalModelAsScaledDeltas(weighting: CrossTierWeighting) {
        // --cross-tier deltas (the default). K = 10, η_g = 1, s = constant. Tier 0: a, b; tier 1: c.
        var settings = strataSettings(k: 10)
        settings.crossTier = .deltas
        settings.crossTierWeighting = weighting
        var rule = StrataRule(settings: settings, parameters: [0, 0])
        rule.tiersFormed(count: 2)
        let a = client("a", tier: 0), b = client("b", tier: 0), c = client("c", tier: 1)
        _ = rule.schedule(idle: [a, b, c], connected: [a, b, c], now: 0)
        _ = rule.accept(update(1, "a", lane: 0, base: 0, n: 1, [3, 0]), now: 1)
        _ = rule.accept(update(2, "b", lane: 0, base: 0, n: 2, [0, 3]), now: 1)
        // Tier 0 steps to [1, 2] (d_0 = [1, 2]). T0 = 2, T1 = 1; with two tiers both weightings give
        // w = [1/3, 2/3]; scale = w0 / max w = 1/2: x = [0, 0] + 1/2·[1, 2] = [0.5, 1]. Every tier continues from x.
        // Inverse weights count members (m = [2, 1]): m/T = [1, 1], w = [1/2, 1/2], scale 1: x = [1, 2].
        let inverse = weighting == .inverse
        let first = rule.aggregations(now: 1)
        #expect(first.count == 1)
        #expect(approxEqual(first.first?.laneParameters ?? [], [1, 2]))
        #expect(approxEqual(first.first?.globalParameters ?? [], inverse ? [1, 2] : [0.5, 1]))
        #expect(close(first.first?.laneWeights ?? [], inverse ? [0.5, 0.5] : [1.0 / 3, 2.0 / 3]))
        let x1: [Float] = inverse ? [1, 2] : [0.5, 1]
        #expect(approxEqual(rule.lane(0).parameters, x1) && approxEqual(rule.lane(1).parameters, x1))
        // Tier 1 (K_1 = 1) steps from x1 by [3, 3]. T = [2, 2]: FedAT w = [1/2, 1/2], scale 1: x = [3.5, 4];
        // inverse m/T = [1, 1/2], w = [2/3, 1/3], scale 1/2: x = [1, 2] + [1.5, 1.5] = [2.5, 3.5].
        _ = rule.accept(update(3, "c", lane: 1, base: 0, n: 1, [3, 3]), now: 2)
        let second = rule.aggregations(now: 2)
        #expect(approxEqual(second.first?.globalParameters ?? [], inverse ? [2.5, 3.5] : [3.5, 4]))
        #expect(close(second.first?.laneWeights ?? [], inverse ? [2.0 / 3, 1.0 / 3] : [0.5, 0.5]))
        #expect(second.first?.globalVersion == 2 && second.first?.laneVersion == 1)
    }

    @Test func inverseWeightsGiveEveryLiveTierTheSameShareOfTime() {
        // T = [5, 2, 1]: 1/T = [0.2, 0.5, 1], sum 1.7. FedAT's mirror: [1/8, 2/8, 5/8].
        #expect(close(LaneSet.inverseWeights(pushes: [5, 2, 1], active: [0, 1, 2]), [0.2 / 1.7, 0.5 / 1.7, 1 / 1.7]))
        #expect(close(LaneSet.inverseWeights(pushes: [5, 2, 1], active: [0, 2]), [0.2 / 1.2, 0, 1 / 1.2]))
        #expect(close(LaneSet.fedATWeights(pushes: [5, 2, 1], active: [0, 1, 2]), [1.0 / 8, 2.0 / 8, 5.0 / 8]))
        // Two tiers: the same weights.
        #expect(close(LaneSet.inverseWeights(pushes: [7, 3], active: [0, 1]), LaneSet.fedATWeights(pushes: [7, 3], active: [0, 1])))
    }

    @Test func fedAsyncTierMixingAfterATierResumesUsesTheGlobalModelAsBase() {
        // α = 0.5, s = constant; tier 0: a, tier 1: c.
        var s = RuleSettings()
        s.crossTier = .models
        s.tierMixing = .fedAsync
        s.mixingAlpha = 0.5
        s.staleness = .constant
        var rule = StrataRule(settings: s, parameters: [0, 0])
        rule.tiersFormed(count: 2)
        let a = client("a", tier: 0), c = client("c", tier: 1)
        _ = rule.schedule(idle: [a, c], connected: [a, c], now: 0)
        // c: x_1 = 0.5·[0,0] + 0.5·([0,0] + [4,0]) = [2, 0]; T1 = 2, T0 = 1: w = [2/3, 1/3];
        // x = 2/3·[0,0] + 1/3·[2,0] = [2/3, 0]; tier 1 continues from [2/3, 0] at its version 1.
        _ = rule.accept(update(1, "c", lane: 1, base: 0, n: 1, [4, 0]), now: 1)
        #expect(approxEqual(rule.aggregations(now: 1).first?.globalParameters ?? [], [2.0 / 3, 0]))
        // Tier 1 leaves. a: x_0 = 0.5·[0,0] + 0.5·[0,6] = [0, 3]; only tier 0 active: x = [0, 3].
        _ = rule.schedule(idle: [a], connected: [a], now: 2)
        _ = rule.accept(update(2, "a", lane: 0, base: 0, n: 1, [0, 6]), now: 2)
        #expect(approxEqual(rule.aggregations(now: 2).first?.globalParameters ?? [], [0, 3]))
        // Tier 1 comes back and restarts from [0, 3], still at its version 1.
        _ = rule.schedule(idle: [c], connected: [a, c], now: 3)
        #expect(approxEqual(rule.lane(1).parameters, [0, 3]) && rule.lane(1).version == 1)
        // c trained from [0,3]: x_new = [0,3] + [2,0] = [2, 3]; x_1 = 0.5·[0,3] + 0.5·[2,3] = [1, 3]
        // (with the pre-rebase [2/3, 0] as base it would be [4/3, 3/2]).
        // T0 = 2, T1 = 3: w0 = 3/5, w1 = 2/5; x = 3/5·[0,3] + 2/5·[1,3] = [0.4, 3].
        _ = rule.accept(update(3, "c", lane: 1, base: 1, n: 1, [2, 0]), now: 3)
        let out = rule.aggregations(now: 3)
        #expect(out.count == 1)
        #expect(approxEqual(out.first?.laneParameters ?? [], [1, 3]))
        #expect(approxEqual(out.first?.globalParameters ?? [], [0.4, 3]))
    }
}

// MARK: - TiFL

private let tiflClients = [client("a", tier: 0), client("b", tier: 0), client("c", tier: 1), client("d", tier: 1),
                           client("e", tier: 2), client("f", tier: 2)]
private let tierOf = Dictionary(uniqueKeysWithValues: tiflClients.map { ($0.id, $0.tier!) })

/// One TiFL round with every client idle; returns the chosen tier (nil if the selection spans tiers).
private func tiflRound(_ rule: inout TiFLRule, now: Double) -> Int? {
    let assigned = rule.schedule(idle: tiflClients, connected: tiflClients, now: now)
    let tiers = Set(assigned.map { tierOf[$0.clientID]! })
    guard tiers.count == 1, let tier = tiers.first else { return nil }
    // C = 0: every member of the chosen tier, and nobody else.
    #expect(Set(assigned.map(\.clientID)) == Set(tiflClients.filter { $0.tier == tier }.map(\.id)))
    let base = rule.globalVersion
    for (i, a) in assigned.enumerated() {
        #expect(foldedAs(rule.accept(update(Int64(i), a.clientID, base: base, n: 1, [1, 0]), now: now)) != nil)
    }
    #expect(rule.aggregations(now: now).count == 1)
    return tier
}

@Suite struct TiFLRuleTests {
    @Test func adaptiveProbabilitiesFavourTheLeastAccurateTier() {
        let p = TiFLRule.adaptiveProbabilities(accuracies: [0: 0.9, 1: 0.5, 2: 0.7], eligible: [0, 1, 2], tierCount: 3)
        // Order by accuracy: 1 (0.5), 2 (0.7), 0 (0.9); n = 3, n(n+1)/2 = 6: 3/6, 2/6, 1/6.
        #expect(close(p, [1.0 / 6, 3.0 / 6, 2.0 / 6]))
        #expect(close(p.reduce(0, +), 1))
        // Tier 1 not eligible: n = 2, denominators 3: tier 2 gets 2/3, tier 0 1/3.
        let q = TiFLRule.adaptiveProbabilities(accuracies: [0: 0.9, 1: 0.5, 2: 0.7], eligible: [0, 2], tierCount: 3)
        #expect(close(q, [1.0 / 3, 0, 2.0 / 3]))
    }

    @Test func creditsStartAtCeilROverMAndARoundSpendsOne() {
        var s = RuleSettings()
        s.plannedRounds = 10
        var rule = TiFLRule(settings: s, parameters: [0, 0])
        rule.tiersFormed(count: 3)
        // ceil(10 / 3) = 4 each; all tiers start at 1/3.
        #expect(rule.credits == [4, 4, 4])
        #expect(close(rule.probabilities, [1.0 / 3, 1.0 / 3, 1.0 / 3]))
        let tier = tiflRound(&rule, now: 0)
        #expect(tier != nil)
        guard let tier else { return }
        #expect(rule.credits == (0..<3).map { $0 == tier ? 3 : 4 })
        // x = [0,0] + [1,0].
        #expect(approxEqual(rule.globalParameters, [1, 0]))
    }

    @Test func fixedProbabilitiesOnlyEverChooseTheirTier() {
        var s = RuleSettings()
        s.tierSelection = .fixed([1, 0, 0])
        s.plannedRounds = 3          // one credit per tier: static selection must not depend on credits
        var rule = TiFLRule(settings: s, parameters: [0, 0])
        rule.tiersFormed(count: 3)
        #expect(rule.probabilities == [1, 0, 0])
        let chosen = (0..<8).map { tiflRound(&rule, now: Double($0)) }
        #expect(chosen == [Int?](repeating: 0, count: 8))
        #expect(approxEqual(rule.globalParameters, [8, 0]))
    }

    @Test func fixedProbabilitiesAreNormalisedAndMissingTiersGetZero() {
        var s = RuleSettings()
        s.tierSelection = .fixed([2, 1])
        var rule = TiFLRule(settings: s, parameters: [0, 0])
        rule.tiersFormed(count: 3)
        #expect(close(rule.probabilities, [2.0 / 3, 1.0 / 3, 0]))
    }

    @Test func adaptiveSelectionAdaptsEveryIRounds() {
        var s = RuleSettings()
        s.adaptiveInterval = 1
        s.plannedRounds = 30
        var rule = TiFLRule(settings: s, parameters: [0, 0])
        rule.tiersFormed(count: 3)
        rule.observeEvaluation(tierAccuracies: [0: 0.9, 1: 0.5, 2: 0.7])
        #expect(tiflRound(&rule, now: 0) != nil)
        // First check: no earlier accuracy, so the probabilities change to [1/6, 3/6, 2/6].
        #expect(close(rule.probabilities, [1.0 / 6, 3.0 / 6, 2.0 / 6]))
    }

    @Test func selectionIsUniformOnceEveryCreditIsSpent() {
        var s = RuleSettings()
        s.adaptiveInterval = 1
        s.plannedRounds = 3          // one credit per tier
        var rule = TiFLRule(settings: s, parameters: [0, 0])
        rule.tiersFormed(count: 3)
        rule.observeEvaluation(tierAccuracies: [0: 0.5, 1: 0.5, 2: 0.5])
        // While credits last, a tier without credits is not chosen: three rounds, three tiers.
        let firstThree = (0..<3).compactMap { tiflRound(&rule, now: Double($0)) }
        #expect(Set(firstThree) == [0, 1, 2])
        #expect(rule.credits == [0, 0, 0])
        // Then every tier is chosen again (uniformly; P(a tier missing in 30 rounds) = 3·(2/3)^30 < 1e-5).
        let later = (3..<33).compactMap { tiflRound(&rule, now: Double($0)) }
        #expect(later.count == 30)
        #expect(Set(later) == [0, 1, 2], "\(later)")
    }
}

// MARK: - Settings and modes

struct BadSettings: Sendable, CustomTestStringConvertible {
    var name: String
    var settings: RuleSettings
    var testDescription: String { name }

    static func with(_ name: String, _ change: (inout RuleSettings) -> Void) -> BadSettings {
        var s = RuleSettings()
        change(&s)
        return BadSettings(name: name, settings: s)
    }

    static let all: [BadSettings] = [
        with("buffer size 0") { $0.bufferSize = 0 },
        with("buffer timeout 0") { $0.bufferTimeout = 0 },
        with("buffer timeout -1") { $0.bufferTimeout = -1 },
        with("buffer timeout inf") { $0.bufferTimeout = .infinity },
        with("buffer timeout nan") { $0.bufferTimeout = .nan },
        with("max staleness -1") { $0.maxStaleness = -1 },
        with("alpha 0") { $0.mixingAlpha = 0 },
        with("alpha 1.5") { $0.mixingAlpha = 1.5 },
        with("alpha nan") { $0.mixingAlpha = .nan },
        with("clients per round -1") { $0.clientsPerRound = -1 },
        with("deadline 0") { $0.roundDeadline = 0 },
        with("deadline inf") { $0.roundDeadline = .infinity },
        with("over-selection -0.1") { $0.overSelection = -0.1 },
        with("over-selection 11") { $0.overSelection = 11 },
        with("adaptive interval 0") { $0.adaptiveInterval = 0 },
        with("planned rounds 0") { $0.plannedRounds = 0 },
        with("fixed []") { $0.tierSelection = .fixed([]) },
        with("fixed [0, 0]") { $0.tierSelection = .fixed([0, 0]) },
        with("fixed [-1, 2]") { $0.tierSelection = .fixed([-1, 2]) },
        with("fixed [nan]") { $0.tierSelection = .fixed([.nan]) },
        with("fixed [inf]") { $0.tierSelection = .fixed([.infinity]) },
    ]
}

@Suite struct RuleSettingsTests {
    @Test(arguments: BadSettings.all)
    func validateRejects(_ bad: BadSettings) {
        #expect(throws: StrataCoreError.self) { try bad.settings.validate() }
    }

    @Test func validateAcceptsDefaultsAndBoundaries() throws {
        try RuleSettings().validate()
        var s = RuleSettings()
        s.bufferSize = 1
        s.bufferTimeout = nil
        s.maxStaleness = 0
        s.mixingAlpha = 1
        s.clientsPerRound = 0
        s.roundDeadline = 0.5
        s.overSelection = 10
        s.adaptiveInterval = 1
        s.plannedRounds = 1
        s.tierSelection = .fixed([0, 1])
        try s.validate()
    }
}

@Suite struct AggregationModeTests {
    @Test(arguments: AggregationMode.allCases)
    func makeRuleReturnsThatMode(_ mode: AggregationMode) {
        let rule = mode.makeRule(settings: RuleSettings(), parameters: [1, 2, 3])
        #expect(rule.mode == mode)
        #expect(rule.globalParameters == [1, 2, 3])
        #expect(rule.globalVersion == 0)
        #expect(rule.lane(0) == LaneState(version: 0, parameters: [1, 2, 3], pushes: 1))
    }

    @Test func tieredModes() {
        #expect(AggregationMode.allCases.filter(\.usesTiers) == [.strata, .tifl, .fedat])
    }
}
