import Foundation

/// One model's evaluation built up row by row from its outputs: the loss and accuracy of `Trainer.evaluate` and
/// the additive statistics of `Trainer.evaluationStatistics`, with the same arithmetic (arg-max with the lowest
/// index on ties; p(class 1) = 1 / (1 + e^(z₀ − z₁)); residuals in the target's own units).
struct EvaluationAccumulator {
    let outputCount: Int
    let isClassifier: Bool
    let target: ColumnTransform
    let bins: Int
    private(set) var counts: ClassCounts
    private(set) var sums = RegressionSums.zero
    private var rows = 0
    private var lossSum = 0.0, squaredSum = 0.0, lossSquares = 0.0

    init(outputCount: Int, isClassifier: Bool, target: ColumnTransform, bins: Int) {
        self.outputCount = outputCount
        self.isClassifier = isClassifier
        self.target = target
        self.bins = bins
        counts = ClassCounts.zero(classes: isClassifier ? outputCount : 0, bins: isClassifier && outputCount == 2 ? bins : 0)
    }

    /// `z`: the row's `outputCount` outputs (logits, or the standardised prediction); `label`: its class number
    /// or standardised target.
    mutating func add(_ z: UnsafePointer<Float>, label: Float) {
        rows += 1
        if isClassifier {
            let o = outputCount
            let k = Trainer.classIndex(label, outputCount: o)
            var m = z[0], arg = 0
            for j in 1..<o where z[j] > m { m = z[j]; arg = j }
            var s = 0.0
            for j in 0..<o { s += exp(Double(z[j] - m)) }
            let loss = log(s) - Double(z[k] - m)
            lossSum += loss
            lossSquares += loss * loss
            counts.support[k] += 1
            counts.predicted[arg] += 1
            if arg == k { counts.correct[k] += 1 }
            if o == 2 {
                let p1 = 1 / (1 + exp(Double(z[0]) - Double(z[1])))
                let bin = p1.isNaN ? 0 : min(Int((p1 * Double(bins)).rounded(.down)), bins - 1)
                if k == 1 { counts.positiveScores[bin] += 1 } else { counts.negativeScores[bin] += 1 }
            }
        } else {
            let standardised = Double(z[0]) - Double(label)
            squaredSum += standardised * standardised
            let loss = 0.5 * standardised * standardised
            lossSquares += loss * loss
            let prediction = Double(z[0]) * target.scale + target.center
            let y = Double(label) * target.scale + target.center
            let r = prediction - y
            sums.count += 1
            sums.sumResidual += r
            sums.sumAbsoluteResidual += abs(r)
            sums.sumSquaredResidual += r * r
            sums.sumTarget += y
            sums.sumSquaredTarget += y * y
        }
    }

    var statistics: EvaluationStatistics { isClassifier ? .classification(counts) : .regression(sums) }

    /// Mean cross-entropy and accuracy (classifiers), or ½·mean squared error in standardised units (regression).
    var evaluation: Evaluation {
        guard rows > 0 else { return Evaluation(sampleCount: 0, loss: 0, accuracy: 0, meanSquaredError: 0) }
        let n = Double(rows)
        if isClassifier {
            let correct = counts.correct.reduce(0, +)
            return Evaluation(sampleCount: rows, loss: Float(lossSum / n), accuracy: Float(correct / n), meanSquaredError: 0, lossSquares: lossSquares)
        }
        return Evaluation(sampleCount: rows, loss: Float(0.5 * squaredSum / n), accuracy: 0, meanSquaredError: Float(squaredSum / n),
                          lossSquares: lossSquares)
    }
}

public enum OutputEvaluationError: Error, Hashable, Sendable, CustomStringConvertible {
    case shape(expected: [Int], got: Int)
    case notFinite(row: Int)

    public var description: String {
        switch self {
        case .shape(let expected, let got): "outputs of \(got) values, expected \(expected.map(String.init).joined(separator: " × "))"
        case .notFinite(let row): "the outputs of evaluation row \(row) are not finite"
        }
    }
}

extension Trainer {
    /// The evaluation of a model that something else ran (the data owner's trainer) from its `outputs` on the
    /// evaluation rows: `labels.count` rows × `spec.outputCount` values, row-major, in the rows' order (logits for
    /// a classifier: arg-max the predicted class, softmax the probabilities; for regression the prediction in the
    /// standardised target's units). Loss, accuracy and statistics follow from the outputs alone, with the
    /// built-in models' arithmetic, so they always agree with one another.
    public static func evaluate(outputs: [Float], spec: ModelSpec, labels: [Float], target: ColumnTransform = .identity,
                                bins: Int = Trainer.scoreBins) throws(OutputEvaluationError) -> (Evaluation, EvaluationStatistics) {
        let o = spec.outputCount, n = labels.count
        guard outputs.count == n * o else { throw .shape(expected: [n, o], got: outputs.count) }
        var accumulator = EvaluationAccumulator(outputCount: o, isClassifier: spec.isClassifier, target: target, bins: bins)
        try outputs.withUnsafeBufferPointer { (z) throws(OutputEvaluationError) in
            for i in 0..<n {
                let row = z.baseAddress! + i * o
                for j in 0..<o where !row[j].isFinite { throw .notFinite(row: i) }
                accumulator.add(row, label: labels[i])
            }
        }
        return (accumulator.evaluation, accumulator.statistics)
    }
}
