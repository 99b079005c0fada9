/// How one evaluation round's answers become the federation's accuracy and loss, robustly: each agent's
/// weight (its evaluation rows) is capped at `weightRatio` × the round's median weight, then each metric is
/// a trimmed, weighted mean over agents — the ⌊trim·n⌋ highest and lowest answers are dropped — so a few
/// agents reporting accuracy 1.0 on 2^62 rows move nothing (docs/ALGORITHMS.md, "Evaluation").
public struct EvaluationCombination: Sendable, Hashable {
    /// Fraction of the agents dropped at each end, per metric, in [0, 0.5).
    public var trim: Double = 0.2
    /// An agent weighs at most this many times the round's median agent (nil: no cap).
    public var weightRatio: Double? = 4

    public init(trim: Double = 0.2, weightRatio: Double? = 4) {
        self.trim = trim
        self.weightRatio = weightRatio
    }

    public struct Answer: Sendable, Hashable {
        public var samples: Int64
        public var accuracy: Double
        public var loss: Double
        /// Σ ℓ_i² over the answer's rows (update option 5), when it came with one.
        public var lossSquares: Double?
        public init(samples: Int64, accuracy: Double, loss: Double, lossSquares: Double? = nil) {
            self.samples = samples
            self.accuracy = accuracy
            self.loss = loss
            self.lossSquares = lossSquares
        }
    }

    public struct Result: Sendable, Hashable {
        public var accuracy: Double
        public var loss: Double
        /// The answers' capped weights, summed (what the round counts as evaluated rows).
        public var samples: Int64
        /// The standard errors of `accuracy` and `loss` from the rows evaluated (`ScoreSpread`); nil when the
        /// answers do not tell (the loss's needs option 5 from at least half of the answers it kept).
        public var accuracyError: Double? = nil
        public var lossError: Double? = nil
    }

    public func validate() throws {
        guard trim >= 0, trim < 0.5 else { throw StrataCoreError.invalidArgument("the evaluation trim must be in [0, 0.5), got \(trim)") }
        if let r = weightRatio, !(r >= 1 && r.isFinite) { throw StrataCoreError.invalidArgument("the evaluation weight ratio must be >= 1") }
    }

    /// The capped weight of each answer, in order.
    public func weights(_ answers: [Answer]) -> [Double] {
        let raw = answers.map { Double(max(0, $0.samples)) }
        guard let ratio = weightRatio, !raw.isEmpty else { return raw }
        let sorted = raw.sorted()
        let cap = ratio * max(1, sorted[(sorted.count - 1) / 2])
        return raw.map { min($0, cap) }
    }

    /// Nil when no answer carries weight.
    public func combine(_ answers: [Answer]) -> Result? {
        let weights = weights(answers)
        let total = weights.reduce(0, +)
        guard total > 0 else { return nil }
        let drop = min(Int((trim * Double(answers.count)).rounded(.down)), (answers.count - 1) / 2)
        /// The answers a metric keeps: all but the `drop` lowest and highest by it.
        func kept(_ value: (Answer) -> Double) -> ArraySlice<Int> {
            answers.indices.sorted { value(answers[$0]) < value(answers[$1]) }[drop..<(answers.count - drop)]
        }
        func mean(_ value: (Answer) -> Double, over kept: ArraySlice<Int>) -> Double {
            var sum = 0.0, weight = 0.0
            for i in kept {
                sum += weights[i] * value(answers[i])
                weight += weights[i]
            }
            return weight > 0 ? sum / weight : 0
        }
        let byAccuracy = kept(\.accuracy), byLoss = kept(\.loss)
        func error(over kept: ArraySlice<Int>, _ variance: (Answer) -> Double?) -> Double? {
            ScoreSpread.standardError(kept.map { (weight: weights[$0], rows: answers[$0].samples, rowVariance: variance(answers[$0])) })
        }
        return Result(accuracy: mean(\.accuracy, over: byAccuracy), loss: mean(\.loss, over: byLoss),
                      samples: Int64(exactly: total.rounded()) ?? .max,
                      accuracyError: error(over: byAccuracy) { ScoreSpread.accuracyVariance(accuracy: $0.accuracy, rows: $0.samples) },
                      lossError: error(over: byLoss) { answer in
                          answer.lossSquares.flatMap { ScoreSpread.lossVariance(loss: answer.loss, squares: $0, rows: answer.samples) }
                      })
    }
}
