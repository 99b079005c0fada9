import Testing
@testable import StrataCore

private func update(_ task: Int64, _ client: String, _ delta: [Float], samples: Int64 = 1, base: Int64 = 0) -> RuleUpdate {
    RuleUpdate(taskID: task, clientID: client, lane: 0, baseVersion: base, sampleCount: samples, delta: delta)
}

private func fedbuff(k: Int, _ configure: (inout Robustness) -> Void = { _ in }) -> FedBuffRule {
    var settings = RuleSettings()
    settings.bufferSize = k
    settings.bufferTimeout = nil
    settings.staleness = .constant
    configure(&settings.robustness)
    var rule = FedBuffRule(settings: settings, parameters: [0, 0])
    _ = rule.schedule(idle: [], connected: (0..<k).map { ClientView(id: "c\($0)", tier: nil) }, now: 0)
    return rule
}

@Suite struct AgentNormsTests {
    /// The median is over agents: one agent sending many updates has one vote.
    @Test func theBoundIsAMultipleOfTheAgentsMedianNorm() {
        var window = AgentNorms()
        window.record(1, client: "a"); window.record(2, client: "b")
        #expect(window.bound(multiple: 3, minimum: 3) == nil)
        window.record(3, client: "c")
        #expect(window.bound(multiple: 3, minimum: 3) == 6)
        // Three known of ten connected: up to four could lie, so the smallest.
        #expect(window.bound(multiple: 3, minimum: 3, connected: 10) == 3)
        #expect(!window.includesAnHonestNorm(connected: 10, minimum: 3))
        #expect(window.includesAnHonestNorm(connected: 5, minimum: 3))
        for _ in 0..<50 { window.record(1000, client: "fast") }
        #expect(window.count == 4)
        #expect(window.median == 2.5)
        window.record(.nan, client: "d")
        #expect(window.count == 4)
    }

    /// Two agents in a tier of their own weigh two agents' worth, not a whole tier's.
    @Test func inverseCrossTierWeightsCountMembers() {
        let weights = LaneSet.inverseWeights(pushes: [10, 10], active: [0, 1], members: [0: 2, 1: 8])
        #expect(abs(weights[0] - 0.2) < 1e-12 && abs(weights[1] - 0.8) < 1e-12)
        let unweighted = LaneSet.inverseWeights(pushes: [10, 5], active: [0, 1])
        let equalTiers = LaneSet.inverseWeights(pushes: [10, 5], active: [0, 1], members: [0: 3, 1: 3])
        #expect(zip(unweighted, equalTiers).allSatisfy { abs($0 - $1) < 1e-12 })
    }

    @Test func theScaleBringsANormWithinTheBound() {
        #expect(AgentNorms.scale(norm: 10, bound: 5) == 0.5)
        #expect(AgentNorms.scale(norm: 4, bound: 5) == 1)
        #expect(AgentNorms.scale(norm: 4, bound: nil) == 1)
    }
}

@Suite struct RobustFoldTests {
    /// A large-norm delta is scaled to the bound, and keeps its weight in the mean's denominator.
    @Test func aDeltaAboveTheAdaptiveBoundIsClipped() {
        var rule = fedbuff(k: 7) { $0.clipMultiple = 2; $0.minimumAgents = 5 }
        for i in 0..<6 { _ = rule.accept(update(Int64(i), "c\(i)", [1, 0]), now: 0) }   // norms 1
        #expect(rule.clipBound == 2)
        _ = rule.accept(update(6, "c6", [0, 1000]), now: 0)
        let outcome = rule.aggregations(now: 0)
        #expect(outcome.count == 1)
        // mean of six (1, 0) and one clipped (0, 2), each weight 1: (6/7, 2/7).
        #expect(approxEqual(outcome[0].globalParameters, [6.0 / 7, 2.0 / 7]))
    }

    /// Attackers answer first: the median of the first norms known is theirs. The first buffer's deltas wait
    /// for the step (the known norms could all be liars') and are clipped by the bound known then.
    @Test func theFastestAnswersDoNotSetTheBoundOfTheFirstBuffer() {
        for fold in [BufferFold.mean, .trimmedMean(0.1)] {
            var rule = fedbuff(k: 10) { $0.fold = fold }
            _ = rule.accept(update(0, "liar0", [0, 9900]), now: 0)
            _ = rule.accept(update(1, "liar1", [0, 9900]), now: 0)
            _ = rule.accept(update(2, "c2", [1, 0]), now: 0)
            // Three of ten known, two of them liars: the bound is the smallest of the three, not their median.
            #expect(rule.clipBound == 1)
            for i in 3..<10 { _ = rule.accept(update(Int64(i), "c\(i)", [1, 0]), now: 0) }
            let outcome = rule.aggregations(now: 0)
            #expect(outcome.count == 1)
            let step = outcome[0].globalParameters
            // Both liars clipped to norm 1: the step stays within the honest agents' scale.
            #expect(step[1] <= 2.0 / 10 + 1e-6 && step[0] > 0.5, "\(fold): \(step)")
            #expect(rule.clipBound == 1)
        }
    }

    /// Without the deferral (the bound off), the same first buffer moves by hundreds.
    @Test func theFirstBufferWithoutABoundIsTheAttackersStep() {
        var rule = fedbuff(k: 10) { $0.clipMultiple = nil }
        _ = rule.accept(update(0, "liar0", [0, 9900]), now: 0)
        _ = rule.accept(update(1, "liar1", [0, 9900]), now: 0)
        for i in 2..<10 { _ = rule.accept(update(Int64(i), "c\(i)", [1, 0]), now: 0) }
        #expect(rule.aggregations(now: 0)[0].globalParameters[1] > 1000)
    }

    @Test func withoutTheBoundTheSameDeltaDominates() {
        var rule = fedbuff(k: 7) { $0.clipMultiple = nil }
        for i in 0..<6 { _ = rule.accept(update(Int64(i), "c\(i)", [1, 0]), now: 0) }
        _ = rule.accept(update(6, "c6", [0, 1000]), now: 0)
        #expect(approxEqual(rule.aggregations(now: 0)[0].globalParameters, [6.0 / 7, 1000.0 / 7], tolerance: 1e-3))
    }

    /// A fast agent used to fill a buffer with its own updates.
    @Test func oneUpdatePerAgentPerBufferTheNextQueuedAThirdRefused() {
        var rule = fedbuff(k: 2) { $0.clipMultiple = nil }
        #expect(rule.accept(update(1, "fast", [10, 10]), now: 0) == .folded(staleness: 0, weight: 1))
        if case .folded = rule.accept(update(2, "fast", [10, 10]), now: 0) {} else { Issue.record("the second update was not queued") }
        guard case .refused(.overShare, _) = rule.accept(update(3, "fast", [10, 10]), now: 0) else {
            Issue.record("the third update was not refused over-share"); return
        }
        #expect(rule.aggregations(now: 0).isEmpty, "the buffer stepped on one agent's updates alone")
        _ = rule.accept(update(4, "slow", [0, 0]), now: 0)
        let first = rule.aggregations(now: 0)
        #expect(first.count == 1 && Set(first[0].updates.map(\.taskID)) == [1, 4])
        // The queued update opens the next buffer.
        _ = rule.accept(update(5, "slow", [0, 0], base: 1), now: 0)
        let second = rule.aggregations(now: 0)
        #expect(second.count == 1 && Set(second[0].updates.map(\.taskID)) == [2, 5])
    }

    @Test func drainingStepsTheQueuedUpdatesToo() {
        var rule = fedbuff(k: 3) { $0.clipMultiple = nil }
        _ = rule.accept(update(1, "fast", [1, 1]), now: 0)
        _ = rule.accept(update(2, "fast", [1, 1]), now: 0)
        let outcomes = rule.flush(now: 0)
        #expect(outcomes.flatMap(\.updates).map(\.taskID).sorted() == [1, 2])
    }

    @Test func trimmedMeanAndMedianIgnoreAFewExtremeValues() {
        let deltas: [[Float]] = [[1, -1], [2, -2], [3, -3], [1000, 4], [-1000, -4]]
        // β = 0.2 of 5 drops one at each end per coordinate: x: {1,2,3} → 2; y: {-3,-2,-1} → -2.
        #expect(RobustCombination.combine(deltas, fold: .trimmedMean(0.2)) == [2, -2])
        #expect(RobustCombination.combine(deltas, fold: .median) == [2, -2])
        #expect(RobustCombination.combine(deltas, fold: .trimmedMean(0)) == [1.2, -1.2])
        // Even K: the median is the mean of the two middle values.
        #expect(RobustCombination.combine([[1], [2], [4], [9]], fold: .median) == [3])
    }

    /// The vectorised network against a sort of every coordinate, over lengths with and without a tail.
    @Test(arguments: [50, 64, 7])
    func trimmedMeanMatchesASortingReference(n: Int) {
        var g = SeededGenerator(seed: 7)
        let k = 9
        let deltas = (0..<k).map { _ in (0..<n).map { _ in Float(g.nextNormal()) } }
        let result = RobustCombination.combine(deltas, fold: .trimmedMean(0.25))
        for j in 0..<n {
            let kept = deltas.map { $0[j] }.sorted().dropFirst(2).dropLast(2)
            #expect(approxEqual(result[j], kept.reduce(0, +) / Float(kept.count)))
        }
    }

    @Test func aBufferWithTheMedianFoldResistsASignFlippedMinority() {
        var rule = fedbuff(k: 5) { $0.clipMultiple = nil; $0.fold = .median }
        for i in 0..<3 { _ = rule.accept(update(Int64(i), "h\(i)", [1, 1], samples: 10), now: 0) }
        for i in 3..<5 { _ = rule.accept(update(Int64(i), "b\(i)", [-50, -50], samples: 10_000), now: 0) }
        #expect(rule.aggregations(now: 0)[0].globalParameters == [1, 1])
    }

    @Test func foldsParseFromTheirFlagText() throws {
        #expect(try BufferFold(parsing: "mean") == .mean)
        #expect(try BufferFold(parsing: "median") == .median)
        #expect(try BufferFold(parsing: "trimmed-mean") == .trimmedMean(0.2))
        #expect(try BufferFold(parsing: "trimmed-mean:0.1") == .trimmedMean(0.1))
        #expect(throws: StrataCoreError.self) { try BufferFold(parsing: "trimmed-mean:0.5") }
        #expect(throws: StrataCoreError.self) { try BufferFold(parsing: "krum") }
    }
}

@Suite struct EvaluationCombinationTests {
    typealias Answer = EvaluationCombination.Answer

    /// The issue's lie: one answer of accuracy 1.0 on 2^62 rows made the round's accuracy 1.0.
    @Test func liarsAtTheTopAreTrimmedAndTheirWeightCapped() {
        var answers = (0..<8).map { Answer(samples: 100, accuracy: 0.80 + Double($0) * 0.01, loss: 0.5) }
        answers += [Answer(samples: 1 << 62, accuracy: 1, loss: 0), Answer(samples: 1 << 62, accuracy: 1, loss: 0)]
        let combined = EvaluationCombination().combine(answers)!
        // Trimmed: the two liars (top accuracy, bottom loss) and the two lowest honest answers go.
        #expect(abs(combined.accuracy - (0.82 + 0.83 + 0.84 + 0.85 + 0.86 + 0.87) / 6) < 1e-9)
        #expect(abs(combined.loss - 0.5) < 1e-9)
        let naive = answers.reduce(0.0) { $0 + Double($1.samples) * $1.accuracy } / answers.reduce(0.0) { $0 + Double($1.samples) }
        #expect(naive > 0.999)
    }

    @Test func weightsAreCappedAtAMultipleOfTheMedian() {
        let weights = EvaluationCombination(trim: 0, weightRatio: 4).weights([
            Answer(samples: 10, accuracy: 0, loss: 0), Answer(samples: 20, accuracy: 0, loss: 0), Answer(samples: 1000, accuracy: 0, loss: 0)])
        #expect(weights == [10, 20, 80])
    }

    @Test func withoutTrimmingItIsTheSampleWeightedMean() {
        let combined = EvaluationCombination(trim: 0, weightRatio: nil).combine([
            Answer(samples: 1, accuracy: 1, loss: 1), Answer(samples: 3, accuracy: 0.5, loss: 3)])!
        #expect(abs(combined.accuracy - 0.625) < 1e-12)
        #expect(abs(combined.loss - 2.5) < 1e-12)
    }
}

@Suite struct PacingTests {
    /// An honest fast agent is never refused over-share: with an update queued it gets no task until the buffer steps.
    @Test func anAgentWithAQueuedUpdateGetsNoTaskUntilTheBufferSteps() {
        var rule = fedbuff(k: 2) { $0.clipMultiple = nil }
        let clients = [ClientView(id: "fast", tier: nil), ClientView(id: "slow", tier: nil)]
        _ = rule.accept(update(1, "fast", [1, 1]), now: 0)
        #expect(rule.schedule(idle: [clients[0]], connected: clients, now: 0).map(\.clientID) == ["fast"])
        _ = rule.accept(update(2, "fast", [1, 1]), now: 0)
        #expect(rule.schedule(idle: [clients[0]], connected: clients, now: 0).isEmpty)
        _ = rule.accept(update(3, "slow", [1, 1]), now: 0)
        #expect(rule.aggregations(now: 0).count == 1)
        #expect(rule.schedule(idle: clients, connected: clients, now: 0).map(\.clientID) == ["fast", "slow"])
    }
}

