import Testing
@testable import StrataCore

@Suite struct TargetMetricTests {
    @Test func accuracyIsHigherIsBetterWithAnAbsoluteMargin() {
        let m = TargetMetric.accuracy
        #expect(m.isBetter(0.81, than: 0.80))
        #expect(!m.isBetter(0.80, than: 0.80), "a tie keeps the older best")
        #expect(!m.isBetter(0.79, than: 0.80))
        #expect(m.improves(0.8011, on: 0.80))
        #expect(!m.improves(0.8009, on: 0.80), "better, but by less than 0.001")
        #expect(m.reaches(0.85, target: 0.85) && !m.reaches(0.8499, target: 0.85))
        #expect(!m.isBetter(.nan, than: 0.1) && m.isBetter(0.1, than: .nan))
    }

    @Test func lossIsLowerIsBetterWithARelativeMargin() {
        let m = TargetMetric.loss
        #expect(m.isBetter(0.5, than: 0.6) && !m.isBetter(0.6, than: 0.5))
        #expect(m.improves(998, on: 1000), "0.2 % lower")
        #expect(!m.improves(999.5, on: 1000), "0.05 % lower")
        #expect(m.improves(0.000998, on: 0.001), "relative: the scale of the loss does not matter")
        #expect(m.reaches(0.3, target: 0.3) && !m.reaches(0.31, target: 0.3))
    }

    @Test func metricsAreLookedUpByNameInAnEvaluationsScores() {
        #expect(TargetMetric.named("accuracy") == .accuracy && TargetMetric.named("loss") == .loss && TargetMetric.named("f1") == nil)
        let scores = ["accuracy": 0.7, "loss": 0.4]
        #expect(TargetMetric.accuracy.value(in: scores) == 0.7 && TargetMetric.loss.value(in: scores) == 0.4)
        // A metric another engineer adds is one value: the comparisons need nothing else.
        let rmse = TargetMetric(name: "rmse", direction: .lowerIsBetter, margin: .relative(0.001))
        #expect(rmse.value(in: scores) == nil && rmse.value(in: ["rmse": 2]) == 2 && rmse.isBetter(1.9, than: 2))
    }
}

@Suite struct EvaluationQuorumTests {
    @Test func aRoundCountsWithEnoughOfTheAgentsItAsked() {
        let q = EvaluationQuorum(minimumAnswers: 1, fraction: 0.5)
        #expect(q.required(asked: 10) == 5 && q.required(asked: 3) == 2 && q.required(asked: 1) == 1)
        #expect(q.counts(answered: 5, asked: 10) && !q.counts(answered: 4, asked: 10))
        let strict = EvaluationQuorum(minimumAnswers: 10, fraction: 0.5)
        #expect(strict.required(asked: 4) == 10 && !strict.counts(answered: 4, asked: 4))
    }
}

@Suite struct RunProgressTests {
    func progress(_ conditions: EndConditions, quorum: EvaluationQuorum = EvaluationQuorum(), best: ScoredVersion? = nil) -> RunProgress {
        RunProgress(conditions: conditions, quorum: quorum, restoredBest: best)
    }

    @Test func aPartialEvaluationNeverCountsForTheBestOrTheTarget() {
        var p = progress(EndConditions(target: 0.9), quorum: EvaluationQuorum(minimumAnswers: 1, fraction: 0.5))
        let partial = p.evaluated(version: 3, score: 0.99, answered: 1, asked: 4, at: 1)
        #expect(!partial.counted && partial.required == 2 && !partial.newBest && partial.end == nil)
        #expect(p.best == nil && p.decision == nil)
        let whole = p.evaluated(version: 4, score: 0.7, answered: 2, asked: 4, at: 2)
        #expect(whole.counted && whole.newBest && whole.end == nil)
        #expect(p.best == ScoredVersion(version: 4, score: 0.7))
    }

    @Test func theBestIsReplacedOnlyByAStrictlyBetterScore() {
        var p = progress(EndConditions(metric: .loss))
        #expect(p.evaluated(version: 1, score: 2.0, answered: 1, asked: 1, at: 0).newBest)
        #expect(p.evaluated(version: 2, score: 1.5, answered: 1, asked: 1, at: 1).newBest)
        #expect(!p.evaluated(version: 3, score: 1.5, answered: 1, asked: 1, at: 2).newBest)
        #expect(!p.evaluated(version: 4, score: 3.0, answered: 1, asked: 1, at: 3).newBest)
        #expect(!p.evaluated(version: 5, score: nil, answered: 1, asked: 1, at: 4).counted, "a round without the metric")
        #expect(p.best == ScoredVersion(version: 2, score: 1.5))
    }

    @Test func theTargetEndsTheRunOnACountedRound() {
        var p = progress(EndConditions(target: 0.8))
        #expect(p.evaluated(version: 1, score: 0.79, answered: 1, asked: 1, at: 0).end == nil)
        let verdict = p.evaluated(version: 2, score: 0.8, answered: 1, asked: 1, at: 1)
        #expect(verdict.end?.reason == .targetReached)
        #expect(verdict.end?.detail.contains("version 2") == true)
        #expect(p.check(at: 1e9) == nil, "the decision stays; nothing ends it twice")
    }

    @Test func patienceCountsFromTrainingStartAndRestartsOnlyOnAnImprovementByTheMargin() {
        var p = progress(EndConditions(patience: 100))
        #expect(p.check(at: 500) == nil, "no clock before training starts (waiting for --min-clients)")
        p.trainingStarted(at: 10)
        p.trainingStarted(at: 50)   // later calls change nothing
        #expect(p.check(at: 109) == nil)
        #expect(p.evaluated(version: 1, score: 0.5, answered: 1, asked: 1, at: 60).improved)
        #expect(p.check(at: 159) == nil)
        // Creeping up by less than the margin moves the best, not the patience clock...
        #expect(p.evaluated(version: 2, score: 0.5005, answered: 1, asked: 1, at: 150).newBest)
        #expect(!p.evaluated(version: 3, score: 0.5008, answered: 1, asked: 1, at: 155).improved)
        // ...until together the steps pass it.
        #expect(p.evaluated(version: 4, score: 0.5011, answered: 1, asked: 1, at: 158).improved)
        #expect(p.check(at: 257) == nil)
        let end = p.check(at: 258)
        #expect(end?.reason == .patience)
        #expect(end?.detail.contains("best 0.5011 at version 4") == true, "\(String(describing: end))")
        #expect(p.decision == end)
    }

    @Test func withNoEvaluationPatienceStillEndsTheRun() {
        var p = progress(EndConditions(patience: 30))
        p.trainingStarted(at: 0)
        #expect(p.check(at: 30)?.detail.contains("no evaluation counted") == true)
    }

    @Test func aRunWithNoEndConditionEndsByDefault() {
        let none = EndConditions()
        #expect(none.endsByDefaultOnly && none.effectivePatience?.seconds == EndConditions.defaultEndPatience)
        var p = progress(none)
        p.trainingStarted(at: 0)
        #expect(p.check(at: EndConditions.defaultEndPatience - 1) == nil)
        #expect(p.check(at: EndConditions.defaultEndPatience)?.reason == .defaultEnd)
        // Any explicit end condition replaces the default.
        for explicit in [EndConditions(target: 0.9), EndConditions(maxDuration: 1e6), EndConditions(maxVersions: 10), EndConditions(patience: 1e6)] {
            var q = progress(explicit)
            q.trainingStarted(at: 0)
            #expect(!explicit.endsByDefaultOnly && q.check(at: EndConditions.defaultEndPatience * 2) == nil)
        }
    }

    @Test func limitsEndTheRun() {
        var p = progress(EndConditions(maxDuration: 60, maxVersions: 5))
        #expect(p.committed(version: 4) == nil && p.check(at: 59) == nil)
        #expect(p.committed(version: 5)?.reason == .maxVersions)
        var q = progress(EndConditions(maxDuration: 60))
        #expect(q.check(at: 60)?.reason == .maxDuration, "counted from the coordinator's start, training or not")
    }

    @Test func aRestoredBestMustBeBeatenAfterARestart() {
        var p = progress(EndConditions(patience: 100), best: ScoredVersion(version: 40, score: 0.8))
        p.trainingStarted(at: 5)
        let lower = p.evaluated(version: 41, score: 0.7, answered: 1, asked: 1, at: 6)
        #expect(lower.counted && !lower.newBest && !lower.improved)
        #expect(p.best?.version == 40)
        let end = p.check(at: 105)
        #expect(end?.reason == .patience && end?.detail.contains("best 0.8 at version 40") == true, "\(String(describing: end))")
    }
}
