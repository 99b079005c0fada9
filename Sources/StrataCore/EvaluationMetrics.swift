#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Additive statistics of one evaluation: one agent's answer (update option 2, docs/PROTOCOL.md §7.5), or
/// several agents' pooled. Sums of them are the statistics of the pooled rows, so metrics derived from the sum
/// are exact over the whole federation (not means of per-agent metrics). Counts are `Double` so that a capped
/// agent can be scaled down (its rows weighted by cap / rows); an agent's own counts are whole numbers.
public enum EvaluationStatistics: Sendable, Hashable, Codable {
    case classification(ClassCounts)
    case regression(RegressionSums)

    /// Rows these statistics cover.
    public var rows: Double {
        switch self {
        case .classification(let c): c.rows
        case .regression(let r): r.count
        }
    }

    /// Every count and sum multiplied by `factor` (the agent's rows weighted by `factor`).
    public func scaled(by factor: Double) -> EvaluationStatistics {
        switch self {
        case .classification(let c): .classification(c.scaled(by: factor))
        case .regression(let r): .regression(r.scaled(by: factor))
        }
    }

    /// The metrics these statistics determine, by `TargetMetric` name; only finite values, and only the metrics
    /// that are defined (no AUC without rows of both classes, no R² for a constant target).
    public var metrics: [String: Double] {
        switch self {
        case .classification(let c): c.metrics
        case .regression(let r): r.metrics
        }
    }
}

/// Per class k: rows labelled k (`support`), predicted k (`predicted`, arg-max with the lowest index on ties) and
/// both (`correct`). With two classes also the histogram of the predicted probability of class 1 in
/// `positiveScores.count` equal bins over [0, 1] (bin ⌊p·bins⌋, p = 1 in the last), for rows labelled 1
/// (`positiveScores`) and labelled 0 (`negativeScores`); empty otherwise.
public struct ClassCounts: Sendable, Hashable, Codable {
    public var support: [Double]
    public var predicted: [Double]
    public var correct: [Double]
    public var positiveScores: [Double]
    public var negativeScores: [Double]

    public init(support: [Double], predicted: [Double], correct: [Double], positiveScores: [Double] = [], negativeScores: [Double] = []) {
        self.support = support
        self.predicted = predicted
        self.correct = correct
        self.positiveScores = positiveScores
        self.negativeScores = negativeScores
    }

    public static func zero(classes: Int, bins: Int) -> ClassCounts {
        let c = [Double](repeating: 0, count: classes), h = [Double](repeating: 0, count: bins)
        return ClassCounts(support: c, predicted: c, correct: c, positiveScores: h, negativeScores: h)
    }

    public var classes: Int { support.count }
    public var bins: Int { positiveScores.count }
    public var rows: Double { support.reduce(0, +) }

    public func scaled(by factor: Double) -> ClassCounts {
        ClassCounts(support: support.map { $0 * factor }, predicted: predicted.map { $0 * factor }, correct: correct.map { $0 * factor },
                    positiveScores: positiveScores.map { $0 * factor }, negativeScores: negativeScores.map { $0 * factor })
    }

    /// Σ correct / Σ support.
    public var accuracy: Double? {
        let n = rows
        return n > 0 ? correct.reduce(0, +) / n : nil
    }

    /// Mean over the classes that occur (in the labels or the predictions) of F1_k = 2·correct_k / (support_k +
    /// predicted_k): scikit-learn's `f1_score(average="macro")` with its default labels (those present in
    /// y_true or y_pred). A class that is never predicted but occurs has F1 0.
    public var macroF1: Double? {
        var sum = 0.0, classesSeen = 0
        for k in support.indices where support[k] + predicted[k] > 0 {
            sum += 2 * correct[k] / (support[k] + predicted[k])
            classesSeen += 1
        }
        return classesSeen > 0 ? sum / Double(classesSeen) : nil
    }

    /// ROC AUC from the score histograms: the ROC curve's points are the thresholds at the bin edges (from the
    /// top bin down), joined by straight lines, and the area under them is summed by the trapezoid rule. Rows
    /// in the same bin count as ties (half), so this equals the Mann–Whitney AUC of the bin indices — scikit-learn's
    /// `roc_auc_score(y, bin)` — and is within one bin width's ties of the AUC of the unbinned scores.
    /// Nil without histograms or without rows of both classes.
    public var auc: Double? {
        guard bins > 0, negativeScores.count == bins else { return nil }
        let positives = positiveScores.reduce(0, +), negatives = negativeScores.reduce(0, +)
        guard positives > 0, negatives > 0 else { return nil }
        var area = 0.0
        var truePositives = 0.0, falsePositives = 0.0
        for b in stride(from: bins - 1, through: 0, by: -1) {
            let tp = truePositives + positiveScores[b], fp = falsePositives + negativeScores[b]
            // Trapezoid between (fp0, tp0) and (fp, tp), in counts; normalised once at the end.
            area += (fp - falsePositives) * (tp + truePositives) / 2
            truePositives = tp
            falsePositives = fp
        }
        return area / (positives * negatives)
    }

    public var metrics: [String: Double] {
        var m: [String: Double] = [:]
        if let f = macroF1, f.isFinite { m[TargetMetric.macroF1.name] = f }
        if let a = auc, a.isFinite { m[TargetMetric.auc.name] = a }
        return m
    }
}

/// Sums over the evaluation rows of the residual r = ŷ − y, |r|, r², y and y², in the target's own units (the
/// agent maps standardised predictions back before summing).
public struct RegressionSums: Sendable, Hashable, Codable {
    public var count: Double
    public var sumResidual: Double
    public var sumAbsoluteResidual: Double
    public var sumSquaredResidual: Double
    public var sumTarget: Double
    public var sumSquaredTarget: Double

    public init(count: Double, sumResidual: Double, sumAbsoluteResidual: Double, sumSquaredResidual: Double, sumTarget: Double, sumSquaredTarget: Double) {
        self.count = count
        self.sumResidual = sumResidual
        self.sumAbsoluteResidual = sumAbsoluteResidual
        self.sumSquaredResidual = sumSquaredResidual
        self.sumTarget = sumTarget
        self.sumSquaredTarget = sumSquaredTarget
    }

    public static let zero = RegressionSums(count: 0, sumResidual: 0, sumAbsoluteResidual: 0, sumSquaredResidual: 0, sumTarget: 0, sumSquaredTarget: 0)

    public func scaled(by f: Double) -> RegressionSums {
        RegressionSums(count: count * f, sumResidual: sumResidual * f, sumAbsoluteResidual: sumAbsoluteResidual * f,
                       sumSquaredResidual: sumSquaredResidual * f, sumTarget: sumTarget * f, sumSquaredTarget: sumSquaredTarget * f)
    }

    public static func + (a: RegressionSums, b: RegressionSums) -> RegressionSums {
        RegressionSums(count: a.count + b.count, sumResidual: a.sumResidual + b.sumResidual,
                       sumAbsoluteResidual: a.sumAbsoluteResidual + b.sumAbsoluteResidual,
                       sumSquaredResidual: a.sumSquaredResidual + b.sumSquaredResidual,
                       sumTarget: a.sumTarget + b.sumTarget, sumSquaredTarget: a.sumSquaredTarget + b.sumSquaredTarget)
    }

    /// √(Σr² / n).
    public var rmse: Double? { count > 0 ? (sumSquaredResidual / count).squareRoot() : nil }
    /// Σ|r| / n.
    public var mae: Double? { count > 0 ? sumAbsoluteResidual / count : nil }
    /// 1 − Σr² / Σ(y − ȳ)², with Σ(y − ȳ)² = Σy² − (Σy)²/n. Nil when the target does not vary (scikit-learn's
    /// `r2_score` then returns an arbitrary 0 or 1) — or varies so little next to its mean that the difference
    /// of sums has no significant digit left (|ȳ| / σ beyond about 10⁶).
    public var r2: Double? {
        guard count > 0 else { return nil }
        let total = sumSquaredTarget - sumTarget * sumTarget / count
        guard total > 1e-12 * sumSquaredTarget, total > 0 else { return nil }
        return 1 - sumSquaredResidual / total
    }

    public var metrics: [String: Double] {
        var m: [String: Double] = [:]
        if let v = rmse, v.isFinite { m[TargetMetric.rmse.name] = v }
        if let v = mae, v.isFinite { m[TargetMetric.mae.name] = v }
        if let v = r2, v.isFinite { m[TargetMetric.r2.name] = v }
        return m
    }
}

// MARK: - Validation of one agent's answer

/// Why an agent's evaluation statistics are refused: an honest agent never sends them.
public enum EvaluationStatisticsError: Error, Hashable, Sendable, CustomStringConvertible {
    /// Classification statistics for a regression model, or the reverse.
    case wrongKind(model: ModelKind)
    case classCount(expected: Int, got: Int)
    /// A count or sum that is NaN or infinite.
    case notFinite(field: String)
    case negative(field: String)
    /// The rows the statistics cover differ from the answer's `evalSampleCount` (itself at most the hello's).
    case rowCount(field: String, value: Double, expected: Int64)
    /// Counts or sums that no set of rows can give (more correct than labelled, Σ|r| < |Σr|, …).
    case impossible(String)
    /// The statistics contradict the answer's own `evalAccuracy` or `evalLoss`.
    case disagrees(String)

    public var description: String {
        switch self {
        case .wrongKind(let kind):
            "statistics of the other kind (classification or regression) for a \(kind.rawValue) model"
        case .classCount(let expected, let got): "statistics for \(got) classes, the model has \(expected)"
        case .notFinite(let field): "\(field) is not finite"
        case .negative(let field): "\(field) is negative"
        case .rowCount(let field, let value, let expected): "\(field) covers \(value) rows, the answer's evalSampleCount is \(expected)"
        case .impossible(let what): "impossible statistics: \(what)"
        case .disagrees(let what): "the statistics disagree with the answer: \(what)"
        }
    }
}

extension EvaluationStatistics {
    /// Checks one agent's statistics before they are pooled: the kind and class count of the model, every value
    /// finite and non-negative where it must be, the rows they cover equal to `rows` (the answer's
    /// `evalSampleCount`, already checked against the session's hello), counts and sums that some set of rows
    /// could give, and agreement with the answer's own accuracy (classification) or loss (regression: ½·Σr² /
    /// (n·scale²), the standardised mean squared error, with `targetScale` the federation's target scale).
    public func validate(model: ModelSpec, rows: Int64, reportedAccuracy: Double, reportedLoss: Double,
                         targetScale: Double = 1) throws(EvaluationStatisticsError) {
        let n = Double(rows)
        switch self {
        case .classification(let c):
            guard model.isClassifier else { throw .wrongKind(model: model.kind) }
            guard c.classes == model.outputCount, c.predicted.count == c.classes, c.correct.count == c.classes else {
                throw .classCount(expected: model.outputCount, got: c.classes)
            }
            for (name, values) in [("support", c.support), ("predicted", c.predicted), ("correct", c.correct),
                                   ("positiveScores", c.positiveScores), ("negativeScores", c.negativeScores)] {
                for (k, v) in values.enumerated() {
                    guard v.isFinite else { throw .notFinite(field: "\(name)[\(k)]") }
                    guard v >= 0 else { throw .negative(field: "\(name)[\(k)]") }
                    guard v == v.rounded() else { throw .impossible("\(name)[\(k)] = \(v) is not a whole number") }
                }
            }
            for (field, total) in [("support", c.support.reduce(0, +)), ("predicted", c.predicted.reduce(0, +))] where total != n {
                throw .rowCount(field: field, value: total, expected: rows)
            }
            for k in 0..<c.classes where c.correct[k] > min(c.support[k], c.predicted[k]) {
                throw .impossible("class \(k): \(c.correct[k]) correct of \(c.support[k]) labelled and \(c.predicted[k]) predicted")
            }
            if c.bins > 0 {
                guard c.classes == 2 else { throw .impossible("score histograms with \(c.classes) classes (only 2 have them)") }
                guard c.negativeScores.count == c.bins else { throw .impossible("histograms of \(c.bins) and \(c.negativeScores.count) bins") }
                guard c.positiveScores.reduce(0, +) == c.support[1], c.negativeScores.reduce(0, +) == c.support[0] else {
                    throw .impossible("the score histograms hold \(c.positiveScores.reduce(0, +)) and \(c.negativeScores.reduce(0, +)) rows, the classes \(c.support[1]) and \(c.support[0])")
                }
            }
            let accuracy = c.correct.reduce(0, +) / n
            // evalAccuracy travels as an f32: 1e-5 is far above its rounding and far below one row in 10^4.
            guard abs(accuracy - reportedAccuracy) <= 1e-5 else {
                throw .disagrees("accuracy \(accuracy) from the counts, evalAccuracy \(reportedAccuracy)")
            }
        case .regression(let r):
            guard !model.isClassifier else { throw .wrongKind(model: model.kind) }
            let fields = [("count", r.count), ("sumResidual", r.sumResidual), ("sumAbsoluteResidual", r.sumAbsoluteResidual),
                          ("sumSquaredResidual", r.sumSquaredResidual), ("sumTarget", r.sumTarget), ("sumSquaredTarget", r.sumSquaredTarget)]
            for (name, v) in fields where !v.isFinite { throw .notFinite(field: name) }
            for (name, v) in [("sumAbsoluteResidual", r.sumAbsoluteResidual), ("sumSquaredResidual", r.sumSquaredResidual),
                              ("sumSquaredTarget", r.sumSquaredTarget)] where v < 0 {
                throw .negative(field: name)
            }
            guard r.count == n else { throw .rowCount(field: "count", value: r.count, expected: rows) }
            // Inequalities every set of n rows satisfies (Cauchy–Schwarz, triangle), with room for rounding.
            let slack = 1 + 1e-6
            guard abs(r.sumResidual) <= r.sumAbsoluteResidual * slack else { throw .impossible("|Σr| > Σ|r|") }
            guard r.sumAbsoluteResidual * r.sumAbsoluteResidual <= n * r.sumSquaredResidual * slack else { throw .impossible("(Σ|r|)² > n·Σr²") }
            guard r.sumSquaredResidual <= r.sumAbsoluteResidual * r.sumAbsoluteResidual * slack else { throw .impossible("Σr² > (Σ|r|)²") }
            guard r.sumTarget * r.sumTarget <= n * r.sumSquaredTarget * slack else { throw .impossible("(Σy)² > n·Σy²") }
            guard targetScale > 0, targetScale.isFinite else { return }
            // evalLoss is ½·mean r'² on the standardised scale, r' = r / scale: an agent that forgot to map its
            // predictions back (or sums something else) disagrees by far more than f32 rounding.
            let loss = 0.5 * r.sumSquaredResidual / (n * targetScale * targetScale)
            guard abs(loss - reportedLoss) <= 1e-2 * max(loss, reportedLoss) + 1e-6 else {
                throw .disagrees("½·Σr²/(n·scale²) = \(loss), evalLoss \(reportedLoss)")
            }
        }
    }
}

// MARK: - Pooling the answers of one evaluation round

/// The metrics of one round pooled from the agents' statistics, and how many answers each metric pooled (its
/// answered count for the round's quorum: a metric computed from a few agents' statistics must not count as
/// the federation's).
public struct PooledEvaluation: Sendable, Hashable {
    /// By `TargetMetric` name (rmse, mae, r2, macro-f1, auc); finite values only.
    public var metrics: [String: Double]
    /// Answers whose statistics each metric pooled.
    public var answers: [String: Int]
    /// The pooled statistics (capped weights), nil when no answer carried any.
    public var statistics: EvaluationStatistics?

    public init(metrics: [String: Double] = [:], answers: [String: Int] = [:], statistics: EvaluationStatistics? = nil) {
        self.metrics = metrics
        self.answers = answers
        self.statistics = statistics
    }
}

extension EvaluationCombination {
    /// Pools the statistics that came with `answers` (`statistics[i]` belongs to `answers[i]`; nil: that agent
    /// sent none, e.g. an older agent). Each agent's statistics are scaled by its capped weight / its rows — the
    /// same cap `weights(_:)` puts on its accuracy and loss (at most `weightRatio` × the round's median agent) —
    /// then summed, and the metrics are computed from the sum. Statistics must have been validated (kind, class
    /// count, rows equal to the answer's samples). Two-class histograms pool over the answers with the most
    /// common bin count (ties: the finer one); AUC counts only those answers.
    public func pool(_ answers: [Answer], statistics: [EvaluationStatistics?]) -> PooledEvaluation {
        precondition(answers.count == statistics.count, "one statistics entry per answer")
        let weights = weights(answers)
        var scaled: [EvaluationStatistics] = []
        for (i, s) in statistics.enumerated() {
            guard let s, s.rows > 0, weights[i] > 0 else { continue }
            scaled.append(s.scaled(by: min(1, weights[i] / s.rows)))
        }
        guard let first = scaled.first else { return PooledEvaluation() }
        switch first {
        case .regression:
            var sum = RegressionSums.zero
            var count = 0
            for case .regression(let r) in scaled {
                sum = sum + r
                count += 1
            }
            let metrics = sum.metrics
            return PooledEvaluation(metrics: metrics, answers: metrics.mapValues { _ in count }, statistics: .regression(sum))
        case .classification(let c0):
            let classes = c0.classes
            let parts = scaled.compactMap { s -> ClassCounts? in
                if case .classification(let c) = s, c.classes == classes { return c }
                return nil
            }
            // The histograms' common bin count: the most frequent among answers that sent histograms.
            var binVotes: [Int: Int] = [:]
            for c in parts where c.bins > 0 { binVotes[c.bins, default: 0] += 1 }
            let bins = binVotes.max { $0.value != $1.value ? $0.value < $1.value : $0.key < $1.key }?.key ?? 0
            var sum = ClassCounts.zero(classes: classes, bins: bins)
            var withHistogram = 0
            for c in parts {
                for k in 0..<classes {
                    sum.support[k] += c.support[k]
                    sum.predicted[k] += c.predicted[k]
                    sum.correct[k] += c.correct[k]
                }
                if bins > 0, c.bins == bins {
                    for b in 0..<bins {
                        sum.positiveScores[b] += c.positiveScores[b]
                        sum.negativeScores[b] += c.negativeScores[b]
                    }
                    withHistogram += 1
                }
            }
            // AUC is computed from the histograms' own rows: those of the answers with the common bin count.
            var metrics: [String: Double] = [:]
            var counted: [String: Int] = [:]
            if let f = sum.macroF1, f.isFinite {
                metrics[TargetMetric.macroF1.name] = f
                counted[TargetMetric.macroF1.name] = parts.count
            }
            if let a = sum.auc, a.isFinite {
                metrics[TargetMetric.auc.name] = a
                counted[TargetMetric.auc.name] = withHistogram
            }
            return PooledEvaluation(metrics: metrics, answers: counted, statistics: .classification(sum))
        }
    }
}

// MARK: - Computing an agent's statistics

extension Trainer {
    /// The reference number of score bins of a two-class histogram (docs/PROTOCOL.md §7.5).
    public static let scoreBins = 100

    /// The evaluation statistics of `parameters` on `data` (the rows as the model sees them: standardised).
    /// Classification: the class counts and, with two classes, the histograms of p(class 1) = 1 / (1 + e^(z₀ − z₁))
    /// in `bins` bins. Regression: the sums of r = ŷ − y, |r|, r², y, y² after mapping predictions and targets
    /// back to the target's units with `target` (ŷ = ŷ'·scale + center; y likewise), so RMSE and MAE are in the
    /// user's units. Predictions are the same logits (and arg-max, lowest index on ties) as `evaluate`'s.
    public static func evaluationStatistics(spec: ModelSpec, parameters: [Float], data: Dataset, target: ColumnTransform = .identity,
                                            bins: Int = Trainer.scoreBins) -> EvaluationStatistics {
        precondition(parameters.count == spec.parameterCount && data.featureCount == spec.featureCount, "shapes do not match the model")
        precondition(bins >= 1, "bins must be >= 1")
        let n = data.count, f = spec.featureCount, o = spec.outputCount
        // An MLP's outputs come from its own forward pass; the linear kinds' from `logits` below.
        let mlpOutputs = spec.mlp?.outputs(parameters: parameters, data: data)
        let cm = mlpOutputs == nil ? classMajor(parameters, spec: spec) : []
        var scratch = [Float](repeating: 0, count: o)
        var accumulator = EvaluationAccumulator(outputCount: o, isClassifier: spec.isClassifier, target: target, bins: bins)
        if spec.kind == .custom { preconditionFailure("a custom model is evaluated by its owner's trainer") }
        cm.withUnsafeBufferPointer { w in
        scratch.withUnsafeMutableBufferPointer { z in
        data.features.withUnsafeBufferPointer { x in
            let zp = z.baseAddress!
            let xp = x.baseAddress ?? UnsafePointer(zp)
            for i in 0..<n {
                if let mlpOutputs {
                    for k in 0..<o { zp[k] = mlpOutputs[i * o + k] }
                } else {
                    logits(row: xp + i * f, weights: w.baseAddress!, featureCount: f, outputCount: o, into: zp)
                }
                accumulator.add(zp, label: data.labels[i])
            }
        }}}
        return accumulator.statistics
    }
}
