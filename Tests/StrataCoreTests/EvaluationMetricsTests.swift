import Testing
@testable import StrataCore

// Reference values: computed once with scikit-learn 1.9.1 / NumPy 2.4.6 (python3) on exactly the arrays written
// out below, with sklearn.metrics.accuracy_score, f1_score(average="macro"), roc_auc_score,
// mean_squared_error (square-rooted), mean_absolute_error and r2_score; the scripts are quoted in the comments.

/// Class counts of (label, prediction) pairs, as an agent sums them.
private func classCounts(labels: [Int], predictions: [Int], classes: Int) -> ClassCounts {
    var c = ClassCounts.zero(classes: classes, bins: 0)
    for (y, p) in zip(labels, predictions) {
        c.support[y] += 1
        c.predicted[p] += 1
        if y == p { c.correct[y] += 1 }
    }
    return c
}

/// Histograms of scores in `bins` bins: bin ⌊p·bins⌋, p = 1 in the last (docs/PROTOCOL.md §7.5).
private func histograms(labels: [Int], scores: [Double], bins: Int) -> (positive: [Double], negative: [Double]) {
    var positive = [Double](repeating: 0, count: bins), negative = positive
    for (y, p) in zip(labels, scores) {
        let b = min(Int((p * Double(bins)).rounded(.down)), bins - 1)
        if y == 1 { positive[b] += 1 } else { negative[b] += 1 }
    }
    return (positive, negative)
}

private func regressionSums(targets: [Double], predictions: [Double]) -> RegressionSums {
    var s = RegressionSums.zero
    for (y, yhat) in zip(targets, predictions) {
        let r = yhat - y
        s = s + RegressionSums(count: 1, sumResidual: r, sumAbsoluteResidual: abs(r), sumSquaredResidual: r * r, sumTarget: y, sumSquaredTarget: y * y)
    }
    return s
}

private func close(_ a: Double?, _ b: Double, _ tolerance: Double = 1e-12) -> Bool {
    guard let a else { return false }
    return abs(a - b) <= tolerance * max(1, abs(b))
}

@Suite struct EvaluationMetricsReferenceTests {
    /// y_true = [0,0,0,0,1,1,1,2,2,0,1,1,0,2,1,0,0,1,1,0], y_pred = [0,0,1,0,1,1,0,1,0,0,1,3,0,1,1,3,0,1,0,0]:
    /// class 2 occurs but is never predicted (F1 0), class 3 is predicted but never occurs (F1 0, counted, as
    /// scikit-learn's default labels are those in y_true or y_pred). accuracy_score = 0.6, f1_score(average="macro")
    /// = 0.3404605263157895.
    @Test func macroF1AndAccuracyMatchScikitLearn() {
        let labels = [0, 0, 0, 0, 1, 1, 1, 2, 2, 0, 1, 1, 0, 2, 1, 0, 0, 1, 1, 0]
        let predictions = [0, 0, 1, 0, 1, 1, 0, 1, 0, 0, 1, 3, 0, 1, 1, 3, 0, 1, 0, 0]
        let c = classCounts(labels: labels, predictions: predictions, classes: 4)
        #expect(close(c.accuracy, 0.6))
        #expect(close(c.macroF1, 0.3404605263157895))
        // A fifth class that neither occurs nor is predicted changes nothing.
        var five = c
        for keyPath in [\ClassCounts.support, \ClassCounts.predicted, \ClassCounts.correct] { five[keyPath: keyPath].append(0) }
        #expect(close(five.macroF1, 0.3404605263157895))
        #expect(c.auc == nil)   // no histograms with 4 classes
    }

    /// rng = default_rng(12); y = rng.integers(0, 2, 40); p = round(clip(0.5 + 0.25·(2y − 1) + rng.normal(0, 0.2, 40), 0, 1), 4).
    /// roc_auc_score(y, min(floor(p·10), 9)) = 0.9778645833333334 (the binned AUC, exact);
    /// roc_auc_score(y, p) = 0.984375 (unbinned: within the ties of a bin width); f1_score(y, p > 0.5, average="macro") = 0.9479166666666667.
    @Test func aucFromTheHistogramsIsScikitLearnsAucOfTheBins() {
        let labels = [1, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0]
        let scores = [0.8816, 0.1811, 0.6505, 0.727, 0.1289, 0.1311, 0.1933, 0.1043, 0.9033, 0.0, 0.4147, 0.1249, 0.6408, 0.4798, 0.7212,
                      0.2005, 0.2883, 0.6432, 0.2688, 1.0, 0.8318, 0.1353, 0.4406, 0.7242, 0.3688, 0.3725, 0.6718, 0.0, 0.1805, 0.3603,
                      0.174, 0.3378, 0.9459, 0.1412, 0.9963, 1.0, 0.4658, 0.4831, 0.9694, 0.7009]
        var c = classCounts(labels: labels, predictions: scores.map { $0 > 0.5 ? 1 : 0 }, classes: 2)
        (c.positiveScores, c.negativeScores) = histograms(labels: labels, scores: scores, bins: 10)
        #expect(close(c.auc, 0.9778645833333334))
        #expect(abs((c.auc ?? 0) - 0.984375) < 0.01)
        #expect(close(c.macroF1, 0.9479166666666667))
        // 1000 bins separate every distinct score here: the unbinned AUC.
        (c.positiveScores, c.negativeScores) = histograms(labels: labels, scores: scores, bins: 1000)
        #expect(close(c.auc, 0.984375))
        #expect(c.metrics == ["macro-f1": c.macroF1!, "auc": c.auc!])
        // Rows of one class only: no AUC.
        let onlyPositive = ClassCounts(support: [0, 3], predicted: [1, 2], correct: [0, 2], positiveScores: [1, 2], negativeScores: [0, 0])
        #expect(onlyPositive.auc == nil)
    }

    /// y = [1012.5, 987.25, 1100.0, 950.5, 1003.0, 1049.75, 998.0, 1021.5, 976.25, 1065.0, 1033.5, 940.0],
    /// ŷ = [1008.0, 995.5, 1087.25, 962.0, 1001.5, 1040.0, 1005.75, 1019.0, 990.0, 1052.5, 1030.0, 955.25]:
    /// √mean_squared_error = 9.733426084032967, mean_absolute_error = 8.625, r2_score = 0.9519513014950172.
    /// The targets sit around 1000 with a spread of about 45: R² from Σy and Σy² keeps its digits.
    @Test func rmseMaeAndR2MatchScikitLearn() {
        let y = [1012.5, 987.25, 1100.0, 950.5, 1003.0, 1049.75, 998.0, 1021.5, 976.25, 1065.0, 1033.5, 940.0]
        let yhat = [1008.0, 995.5, 1087.25, 962.0, 1001.5, 1040.0, 1005.75, 1019.0, 990.0, 1052.5, 1030.0, 955.25]
        let s = regressionSums(targets: y, predictions: yhat)
        #expect(close(s.rmse, 9.733426084032967))
        #expect(close(s.mae, 8.625))
        #expect(close(s.r2, 0.9519513014950172, 1e-10))
        #expect(s.metrics.keys.sorted() == ["mae", "r2", "rmse"])
        // A constant target has no R² (scikit-learn's arbitrary 0 or 1 is not reported).
        #expect(regressionSums(targets: [5, 5, 5], predictions: [4, 5, 6]).r2 == nil)
    }

    /// The agent's side, on a fixed model and rows (ref script: X float32 8×2 as below; linear w = [0.5, −1], b = 0.2,
    /// the target standardised with center 100, scale 10, ŷ = (X·w + b)·10 + 100, y = y'·10 + 100:
    /// rmse 2.3584953615953355, mae 1.6250002291053534, r2 0.9363831272278076. Softmax W = [[1, −1], [0.5, 0.25]],
    /// b = [0.1, −0.1], labels [0,0,1,1,0,1,1,0]: accuracy 0.625, macro-F1 0.6190476190476191, and with 4 bins of
    /// p1 = 1/(1 + e^(z0 − z1)) roc_auc_score(labels, bins) = 0.6875.)
    @Test func anAgentsStatisticsGiveTheReferenceMetricsInTheTargetsUnits() {
        let x: [Float] = [0.5, -1.2, 1.5, 0.3, -0.7, 0.8, 0.0, 0.0, 2.1, -0.4, -1.3, -0.9, 0.9, 1.7, -0.2, 0.6]
        let linear = ModelSpec(kind: .linearRegression, featureCount: 2, outputCount: 1)
        let standardised = Dataset(featureCount: 2, features: x, labels: [1.4, 0.1, -1.0, 0.3, 1.6, 0.2, -1.1, -0.5])
        let regression = Trainer.evaluationStatistics(spec: linear, parameters: [0.5, -1.0, 0.2], data: standardised,
                                                      target: ColumnTransform(center: 100, scale: 10, fill: 100))
        let m = regression.metrics
        #expect(close(m["rmse"], 2.3584953615953355, 1e-6))
        #expect(close(m["mae"], 1.6250002291053534, 1e-6))
        #expect(close(m["r2"], 0.9363831272278076, 1e-6))
        // Its loss agrees with the evaluation's (½ mean squared error on the standardised scale).
        let evaluation = Trainer.evaluate(spec: linear, parameters: [0.5, -1.0, 0.2], data: standardised)
        #expect(throws: Never.self) {
            try regression.validate(model: linear, rows: 8, reportedAccuracy: 0, reportedLoss: Double(evaluation.loss), targetScale: 10)
        }

        let softmax = ModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 2)
        let rows = Dataset(featureCount: 2, features: x, labels: [0, 0, 1, 1, 0, 1, 1, 0])
        let parameters: [Float] = [1, -1, 0.5, 0.25, 0.1, -0.1]
        let classification = Trainer.evaluationStatistics(spec: softmax, parameters: parameters, data: rows, bins: 4)
        guard case .classification(let c) = classification else { Issue.record("not classification"); return }
        #expect(c.accuracy == 0.625 && c.bins == 4)
        #expect(close(c.macroF1, 0.6190476190476191))
        #expect(close(c.auc, 0.6875))
        // The same arg-max as evaluate's accuracy, so the coordinator's agreement check holds.
        let accuracy = Trainer.evaluate(spec: softmax, parameters: parameters, data: rows).accuracy
        #expect(Double(accuracy) == c.accuracy)
    }
}

@Suite struct EvaluationPoolingTests {
    private func splitRows(_ data: Dataset, at cut: Int) -> (Dataset, Dataset) {
        (data.subset(0..<cut), data.subset(cut..<data.count))
    }

    /// The property the protocol relies on: the statistics of two agents, summed, are the statistics of their
    /// rows pooled, so every metric of the sum is the metric of the pooled rows (uncapped weights).
    @Test(arguments: [UInt64(1), 2, 3, 4, 5])
    func mergingTwoAgentsEqualsThePooledRows(seed: UInt64) {
        let combination = EvaluationCombination(trim: 0, weightRatio: nil)
        var g = SeededGenerator(seed: seed)
        let cut = 5 + g.nextInt(below: 60)
        for (kind, classes) in [(ModelKind.linearRegression, 1), (.softmaxRegression, 2), (.softmaxRegression, 5)] {
            let spec = ModelSpec(kind: kind, featureCount: 3, outputCount: classes)
            let data = randomDataset(kind: kind, count: 80, featureCount: 3, classes: classes, seed: seed &* 31 &+ UInt64(classes))
            let parameters = randomParameters(spec, seed: seed &+ 99, scale: 1)
            let target = ColumnTransform(center: 250, scale: 40, fill: 250)
            let (a, b) = splitRows(data, at: cut)
            let whole = Trainer.evaluationStatistics(spec: spec, parameters: parameters, data: data, target: target, bins: 20)
            let parts = [a, b].map { Trainer.evaluationStatistics(spec: spec, parameters: parameters, data: $0, target: target, bins: 20) }
            let answers = [a, b].map { EvaluationCombination.Answer(samples: Int64($0.count), accuracy: 0, loss: 0) }
            let pooled = combination.pool(answers, statistics: parts)
            #expect(!pooled.metrics.isEmpty)
            #expect(pooled.metrics.keys.sorted() == whole.metrics.keys.sorted(), "\(kind) \(classes)")
            for (name, value) in whole.metrics {
                #expect(close(pooled.metrics[name], value, 1e-9), "\(name): \(pooled.metrics[name] ?? .nan) pooled, \(value) whole")
                #expect(pooled.answers[name] == 2)
            }
        }
    }

    /// An agent claiming 1000 rows next to agents of 10 and 20 weighs 4 × the median (80 rows): its statistics
    /// are scaled by 80/1000, as if it had 80 such rows.
    @Test func anAgentsStatisticsAreCappedLikeItsAccuracy() {
        let honest = [regressionSums(targets: Array(repeating: 10, count: 5) + Array(repeating: 20, count: 5), predictions: Array(repeating: 15, count: 10)),
                      regressionSums(targets: Array(repeating: 10, count: 10) + Array(repeating: 20, count: 10), predictions: Array(repeating: 15, count: 20))]
        let liar = RegressionSums(count: 1000, sumResidual: 0, sumAbsoluteResidual: 0, sumSquaredResidual: 0, sumTarget: 15_000, sumSquaredTarget: 1000 * 250)
        let answers = [10, 20, 1000].map { EvaluationCombination.Answer(samples: $0, accuracy: 0, loss: 0) }
        let pooled = EvaluationCombination(trim: 0.2, weightRatio: 4).pool(answers, statistics: (honest + [liar]).map { .regression($0) })
        // 30 honest rows with |r| = 5, and 80 perfect ones: MSE = 30·25 / 110.
        #expect(close(pooled.metrics["rmse"], (750.0 / 110).squareRoot()))
        #expect(close(pooled.metrics["mae"], 150.0 / 110))
        let uncapped = EvaluationCombination(trim: 0, weightRatio: nil).pool(answers, statistics: (honest + [liar]).map { .regression($0) })
        #expect(close(uncapped.metrics["rmse"], (750.0 / 1030).squareRoot()))
    }

    /// Agents without statistics (older agents) take no part in the pooled metrics, and the metrics say how many did.
    @Test func answersWithoutStatisticsAreLeftOutAndCounted() {
        let s = EvaluationStatistics.regression(regressionSums(targets: [1, 2, 3, 4], predictions: [1.5, 2, 2.5, 4]))
        let answers = (0..<3).map { _ in EvaluationCombination.Answer(samples: 4, accuracy: 0, loss: 0) }
        let pooled = EvaluationCombination().pool(answers, statistics: [s, nil, s])
        #expect(pooled.answers["rmse"] == 2 && pooled.answers["r2"] == 2)
        #expect(close(pooled.metrics["rmse"], s.metrics["rmse"]!))
        #expect(EvaluationCombination().pool(answers, statistics: [nil, nil, nil]) == PooledEvaluation())
    }

    /// Two-class histograms of different bin counts: AUC pools the most common bin count, and counts those answers.
    @Test func aucPoolsTheMostCommonBinCount() {
        func agent(bins: Int) -> EvaluationStatistics {
            var c = ClassCounts.zero(classes: 2, bins: bins)
            c.support = [2, 2]; c.predicted = [2, 2]; c.correct = [2, 2]
            c.negativeScores[0] = 2
            c.positiveScores[bins - 1] = 2
            return .classification(c)
        }
        let answers = (0..<3).map { _ in EvaluationCombination.Answer(samples: 4, accuracy: 1, loss: 0) }
        let pooled = EvaluationCombination().pool(answers, statistics: [agent(bins: 10), agent(bins: 100), agent(bins: 10)])
        #expect(pooled.answers["auc"] == 2 && pooled.answers["macro-f1"] == 3)
        #expect(pooled.metrics["auc"] == 1 && pooled.metrics["macro-f1"] == 1)
    }
}

@Suite struct EvaluationStatisticsValidationTests {
    let softmax3 = ModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 3)
    let softmax2 = ModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 2)
    let linear = ModelSpec(kind: .linearRegression, featureCount: 2, outputCount: 1)

    func check(_ s: EvaluationStatistics, _ model: ModelSpec, rows: Int64 = 10, accuracy: Double = 0.5, loss: Double = 0,
               scale: Double = 1) -> EvaluationStatisticsError? {
        do {
            try s.validate(model: model, rows: rows, reportedAccuracy: accuracy, reportedLoss: loss, targetScale: scale)
            return nil
        } catch { return error }
    }

    @Test func honestClassCountsPass() {
        let c = ClassCounts(support: [4, 3, 3], predicted: [5, 3, 2], correct: [3, 1, 1])
        #expect(check(.classification(c), softmax3) == nil)
    }

    @Test func classCountsThatNoRowsCouldGiveAreRefused() {
        let ok = ClassCounts(support: [4, 3, 3], predicted: [5, 3, 2], correct: [3, 1, 1])
        #expect(check(.classification(ok), linear) == .wrongKind(model: .linearRegression))
        #expect(check(.classification(ok), softmax2) == .classCount(expected: 2, got: 3))
        // Claims more rows than the answer's evalSampleCount (the lying evaluator's 2^62 rows).
        #expect(check(.classification(ok), softmax3, rows: 9) == .rowCount(field: "support", value: 10, expected: 9))
        var bad = ok; bad.predicted = [5, 3, 3]
        #expect(check(.classification(bad), softmax3) == .rowCount(field: "predicted", value: 11, expected: 10))
        bad = ok; bad.correct = [3, 4, 1]; bad.support = [4, 3, 3]
        if case .impossible = check(.classification(bad), softmax3) {} else { Issue.record("correct above support accepted") }
        bad = ok; bad.support = [4, 3.5, 2.5]
        if case .impossible = check(.classification(bad), softmax3) {} else { Issue.record("a fractional count accepted") }
        bad = ok; bad.support = [-1, 5, 6]
        #expect(check(.classification(bad), softmax3) == .negative(field: "support[0]"))
        bad = ok; bad.correct = [.nan, 1, 1]
        #expect(check(.classification(bad), softmax3) == .notFinite(field: "correct[0]"))
        // Accuracy 0.5 from the counts, the answer says 0.9.
        if case .disagrees = check(.classification(ok), softmax3, accuracy: 0.9) {} else { Issue.record("disagreement accepted") }
    }

    @Test func histogramsMustHoldTheClassesRows() {
        var c = ClassCounts(support: [6, 4], predicted: [5, 5], correct: [4, 3], positiveScores: [0, 1, 3], negativeScores: [4, 2, 0])
        #expect(check(.classification(c), softmax2, accuracy: 0.7) == nil)
        c.positiveScores = [0, 1, 2]
        if case .impossible = check(.classification(c), softmax2, accuracy: 0.7) {} else { Issue.record("a histogram short of rows accepted") }
        let three = ClassCounts(support: [4, 3, 3], predicted: [5, 3, 2], correct: [3, 1, 1], positiveScores: [1], negativeScores: [1])
        if case .impossible = check(.classification(three), softmax3) {} else { Issue.record("histograms with 3 classes accepted") }
    }

    @Test func regressionSumsThatNoRowsCouldGiveAreRefused() {
        let ok = regressionSums(targets: [1, 2, 3, 4], predictions: [1.5, 2, 2.5, 4.5])
        let loss = 0.5 * ok.sumSquaredResidual / 4
        #expect(check(.regression(ok), linear, rows: 4, loss: loss) == nil)
        #expect(check(.regression(ok), softmax2, rows: 4, loss: loss) == .wrongKind(model: .softmaxRegression))
        #expect(check(.regression(ok), linear, rows: 5, loss: loss) == .rowCount(field: "count", value: 4, expected: 5))
        var bad = ok; bad.sumSquaredResidual = .infinity
        #expect(check(.regression(bad), linear, rows: 4, loss: loss) == .notFinite(field: "sumSquaredResidual"))
        bad = ok; bad.sumAbsoluteResidual = -1
        #expect(check(.regression(bad), linear, rows: 4, loss: loss) == .negative(field: "sumAbsoluteResidual"))
        bad = ok; bad.sumResidual = 10
        if case .impossible = check(.regression(bad), linear, rows: 4, loss: loss) {} else { Issue.record("|Σr| > Σ|r| accepted") }
        bad = ok; bad.sumSquaredTarget = 1
        if case .impossible = check(.regression(bad), linear, rows: 4, loss: loss) {} else { Issue.record("(Σy)² > n·Σy² accepted") }
        // The loss is ½·mean r² on the standardised scale: with a target scale of 10 the sums must be 100 × larger.
        if case .disagrees = check(.regression(ok), linear, rows: 4, loss: loss, scale: 10) {} else { Issue.record("sums in standardised units accepted") }
        #expect(check(.regression(ok.scaled(by: 1)), linear, rows: 4, loss: loss / 100, scale: 10) == nil)
    }
}

@Suite struct TargetMetricChoiceTests {
    @Test func everyMetricHasANameADirectionAndAModelItFits() {
        #expect(TargetMetric.all.map(\.name) == ["accuracy", "loss", "rmse", "mae", "r2", "macro-f1", "auc"])
        for metric in TargetMetric.all { #expect(TargetMetric.named(metric.name) == metric) }
        #expect([TargetMetric.rmse, .mae, .loss].allSatisfy { $0.direction == .lowerIsBetter })
        #expect([TargetMetric.accuracy, .r2, .macroF1, .auc].allSatisfy { $0.direction == .higherIsBetter })
        #expect(TargetMetric.rmse.isBetter(1.0, than: 1.5) && TargetMetric.r2.isBetter(0.9, than: 0.8))
        #expect(TargetMetric.rmse.reaches(2.0, target: 2.5) && !TargetMetric.macroF1.reaches(0.7, target: 0.75))
        #expect(!TargetMetric.accuracy.isPooled && !TargetMetric.loss.isPooled && TargetMetric.auc.isPooled)

        let linear = ModelSpec(kind: .linearRegression, featureCount: 3, outputCount: 1)
        let binary = ModelSpec(kind: .softmaxRegression, featureCount: 3, outputCount: 2)
        let ten = ModelSpec(kind: .softmaxRegression, featureCount: 3, outputCount: 10)
        #expect([TargetMetric.rmse, .mae, .r2, .loss].allSatisfy { $0.problem(for: linear) == nil })
        #expect([TargetMetric.accuracy, .macroF1, .auc, .loss].allSatisfy { $0.problem(for: binary) == nil })
        #expect(TargetMetric.rmse.problem(for: ten)?.contains("regression metric") == true)
        #expect(TargetMetric.auc.problem(for: ten)?.contains("two classes") == true)
        #expect(TargetMetric.accuracy.problem(for: linear) != nil && TargetMetric.macroF1.problem(for: linear) != nil)
    }
}
