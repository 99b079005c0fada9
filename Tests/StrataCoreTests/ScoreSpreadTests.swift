import Foundation
import Testing
@testable import StrataCore

/// The standard error of a round's accuracy and loss, and the best version chosen within it of the record.
@Suite struct ScoreSpreadTests {
    // MARK: Each row's loss, squared and summed

    /// Σ ℓ_i² of every built-in evaluation equals the squares of the rows' own losses, each computed alone by
    /// `lossAndGradient` (an independent path through the model), for each kind; and from outputs likewise.
    @Test(arguments: OutputEvaluationTests.everyKind)
    func lossSquaresAreTheRowsLossesSquared(spec: ModelSpec) throws {
        let data = OutputEvaluationTests.data(classes: spec.outputCount, regression: !spec.isClassifier)
        var rng = SeededGenerator(seed: 8)
        let parameters = spec.initialParameters(seed: 4).map { $0 + Float(rng.nextUniform() - 0.5) }
        let expected = (0..<data.count).reduce(0.0) { sum, i in
            let loss = Double(Trainer.lossAndGradient(spec: spec, parameters: parameters, data: data, indices: [i]).loss)
            return sum + loss * loss
        }
        let builtIn = try #require(Trainer.evaluate(spec: spec, parameters: parameters, data: data).lossSquares)
        #expect(abs(builtIn - expected) <= 1e-4 * expected, "\(spec.summary): \(builtIn) vs \(expected)")
        let (fromOutputs, _) = try Trainer.evaluate(outputs: OutputEvaluationTests.outputs(spec: spec, parameters: parameters, data: data),
                                                    spec: spec, labels: data.labels)
        let outputs = try #require(fromOutputs.lossSquares)
        #expect(abs(outputs - expected) <= 1e-4 * expected, "\(spec.summary): from outputs \(outputs) vs \(expected)")
        // And the coordinator's bounds accept what an honest agent sends.
        let evaluation = Trainer.evaluate(spec: spec, parameters: parameters, data: data)
        try ScoreSpread.check(squares: builtIn, loss: Double(evaluation.loss), rows: Int64(data.count))
    }

    // MARK: Variances and the standard error

    @Test func rowVariancesAreTheUnbiasedSampleVariances() throws {
        let losses: [Double] = [0.1, 0.4, 2.0, 0.05, 0.3]
        let n = Double(losses.count), mean = losses.reduce(0, +) / n
        let unbiased = losses.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / (n - 1)
        let squares = losses.map { $0 * $0 }.reduce(0, +)
        let variance = try #require(ScoreSpread.lossVariance(loss: mean, squares: squares, rows: 5))
        #expect(abs(variance - unbiased) < 1e-12)
        // 3 of 4 right: the 0/1 values' unbiased variance is 0.25 (0.75 · 0.25 · 4/3).
        #expect(ScoreSpread.accuracyVariance(accuracy: 0.75, rows: 4) == 0.25)
        #expect(ScoreSpread.accuracyVariance(accuracy: 0.75, rows: 1) == nil)
        #expect(ScoreSpread.lossVariance(loss: 0.3, squares: .nan, rows: 10) == nil)
    }

    @Test func theStandardErrorOfOneAnswerIsSigmaOverRootN() throws {
        let se = try #require(ScoreSpread.standardError([(weight: 400, rows: 400, rowVariance: 0.04)]))
        #expect(abs(se - 0.2 / 20) < 1e-12)
        // Two equal answers: twice the rows, 1/√2 of the error.
        let two = try #require(ScoreSpread.standardError([(weight: 400, rows: 400, rowVariance: 0.04), (weight: 400, rows: 400, rowVariance: 0.04)]))
        #expect(abs(two - 0.2 / (800.0).squareRoot()) < 1e-12)
        // A capped answer (weight below its rows) counts for less than its rows.
        let capped = try #require(ScoreSpread.standardError([(weight: 100, rows: 400, rowVariance: 0.04), (weight: 100, rows: 100, rowVariance: 0.04)]))
        #expect(abs(capped - (0.04 * (100.0 * 100 / 400 + 100.0 * 100 / 100)).squareRoot() / 200) < 1e-12)
    }

    /// One answer lying about its spread moves nothing when the others are honest (the median of the variances).
    @Test func oneAnswerCannotWidenTheErrorAlone() throws {
        let honest = [(weight: 100.0, rows: Int64(100), rowVariance: Double?(0.04)), (weight: 100, rows: 100, rowVariance: 0.04)]
        let clean = try #require(ScoreSpread.standardError(honest + [(weight: 100, rows: 100, rowVariance: 0.04)]))
        let lied = try #require(ScoreSpread.standardError(honest + [(weight: 100, rows: 100, rowVariance: 1e6)]))
        #expect(clean == lied)
        // Fewer than half of the answers telling their spread: unknown.
        #expect(ScoreSpread.standardError([(weight: 1, rows: 10, rowVariance: 0.1), (weight: 1, rows: 10, rowVariance: nil),
                                           (weight: 1, rows: 10, rowVariance: nil)]) == nil)
        #expect(ScoreSpread.standardError([]) == nil)
    }

    @Test func theCombinationReportsItsErrors() throws {
        let combination = EvaluationCombination(trim: 0, weightRatio: nil)
        let answers = [EvaluationCombination.Answer(samples: 400, accuracy: 0.9, loss: 0.3, lossSquares: 400 * (0.04 + 0.09)),
                       EvaluationCombination.Answer(samples: 400, accuracy: 0.9, loss: 0.3, lossSquares: 400 * (0.04 + 0.09))]
        let result = try #require(combination.combine(answers))
        let lossError = try #require(result.lossError), accuracyError = try #require(result.accuracyError)
        // Row variance 0.04·400/399 (unbiased), over 800 rows.
        #expect(abs(lossError - (0.04 * 400 / 399 / 800).squareRoot()) < 1e-9)
        #expect(abs(accuracyError - (0.09 * 400 / 399 / 800).squareRoot()) < 1e-9)
        // Without option 5 the loss's error is unknown; the accuracy's is still known.
        let old = try #require(combination.combine(answers.map { EvaluationCombination.Answer(samples: $0.samples, accuracy: $0.accuracy, loss: $0.loss) }))
        #expect(old.lossError == nil && old.accuracyError != nil)
    }

    // MARK: Bounds on what an answer may claim

    @Test func lossSquaresOutsideWhatTheRowsAllowAreRefused() {
        // 10 rows of mean loss 0.5: Σℓ² lies in [2.5, 25].
        #expect(throws: Never.self) { try ScoreSpread.check(squares: 2.5, loss: 0.5, rows: 10) }
        #expect(throws: Never.self) { try ScoreSpread.check(squares: 25, loss: 0.5, rows: 10) }
        #expect(throws: LossSquaresError.self) { try ScoreSpread.check(squares: 2.0, loss: 0.5, rows: 10) }
        #expect(throws: LossSquaresError.self) { try ScoreSpread.check(squares: 26, loss: 0.5, rows: 10) }
        #expect(throws: LossSquaresError.notFinite) { try ScoreSpread.check(squares: .infinity, loss: 0.5, rows: 10) }
        #expect(throws: LossSquaresError.notFinite) { try ScoreSpread.check(squares: .nan, loss: 0.5, rows: 10) }
        #expect(throws: LossSquaresError.self) { try ScoreSpread.check(squares: -1, loss: 0, rows: 10) }
        #expect(throws: Never.self) { try ScoreSpread.check(squares: 0, loss: 0, rows: 10) }
    }

    // MARK: The best version

    func progress(record: Double? = nil, best: ScoredVersion? = nil) -> RunProgress {
        RunProgress(conditions: EndConditions(metric: .loss), quorum: EvaluationQuorum(minimumAnswers: 1, fraction: 0),
                    restoredBest: best, restoredRecord: record)
    }

    @Test func theLatestVersionWithinTheErrorOfTheRecordBecomesTheBest() {
        var p = progress()
        #expect(p.evaluated(version: 1, score: 0.50, answered: 1, asked: 1, at: 1, standardError: 0.05).newBest)
        // Worse by less than the error: the later version is the best, the record stays.
        #expect(p.evaluated(version: 2, score: 0.53, answered: 1, asked: 1, at: 2, standardError: 0.05).newBest)
        #expect(p.best == ScoredVersion(version: 2, score: 0.53) && p.record == 0.50)
        // Worse than the record by more than the error: no drift from tie to tie.
        #expect(!p.evaluated(version: 3, score: 0.56, answered: 1, asked: 1, at: 3, standardError: 0.05).newBest)
        #expect(p.best?.version == 2)
        // An earlier version closing late never replaces a later one on a tie.
        #expect(!p.evaluated(version: 1, score: 0.51, answered: 1, asked: 1, at: 4, standardError: 0.05).newBest)
        // Without an error only a strictly better score counts, as before.
        #expect(!p.evaluated(version: 4, score: 0.501, answered: 1, asked: 1, at: 5).newBest)
        #expect(p.evaluated(version: 5, score: 0.49, answered: 1, asked: 1, at: 6).newBest)
        #expect(p.record == 0.49)
    }

    @Test func aRestartKeepsTheRecordNotJustTheBestsScore() {
        // The best (v9, 0.53) was a tie with a record of 0.50 (an earlier version): 0.56 is not within 0.05 of it.
        var p = progress(record: 0.50, best: ScoredVersion(version: 9, score: 0.53))
        #expect(!p.evaluated(version: 10, score: 0.56, answered: 1, asked: 1, at: 1, standardError: 0.05).newBest)
        #expect(p.evaluated(version: 11, score: 0.54, answered: 1, asked: 1, at: 2, standardError: 0.05).newBest)
        // With no stored rounds the best's own score is the record.
        var q = progress(best: ScoredVersion(version: 9, score: 0.53))
        #expect(q.record == 0.53)
        #expect(q.evaluated(version: 10, score: 0.56, answered: 1, asked: 1, at: 1, standardError: 0.05).newBest)
    }

    /// The winner's curse, simulated: hundreds of versions whose true loss has levelled off, each measured on
    /// the same few rows with an error of one standard error. The strict minimum keeps an early version that
    /// the noise flattered; the one-standard-error choice keeps a late one, whose true loss is lower.
    @Test func theOneStandardErrorChoiceKeepsABetterVersionThanTheMinimum() {
        var rng = SeededGenerator(seed: 21)
        let se = 0.004
        var strictTrue = 0.0, tiedTrue = 0.0
        let runs = 40
        for _ in 0..<runs {
            var strict = progress(), tied = progress()
            var truth: [Int64: Double] = [:]
            for version in Int64(1)...600 {
                // Falls fast, then creeps down by 0.003 over the rest of the run.
                let t = 0.06 + 0.04 * exp(-Double(version) / 15) + 0.003 * exp(-Double(version) / 200)
                truth[version] = t
                let observed = t + rng.nextNormal(standardDeviation: se)
                _ = strict.evaluated(version: version, score: observed, answered: 1, asked: 1, at: Double(version))
                _ = tied.evaluated(version: version, score: observed, answered: 1, asked: 1, at: Double(version), standardError: se)
            }
            strictTrue += truth[strict.best!.version]!
            tiedTrue += truth[tied.best!.version]!
        }
        #expect(tiedTrue / Double(runs) < strictTrue / Double(runs), "mean true loss: tied \(tiedTrue / Double(runs)), strict \(strictTrue / Double(runs))")
    }
}
