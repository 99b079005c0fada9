/// How far an evaluation round's accuracy or loss may lie from the model's value on rows like them, by the
/// chance of which rows the agents hold: the round's standard error. The best version is chosen among hundreds
/// of rounds whose scores differ by less than this; without it the minimum over them is mostly luck (the
/// winner's curse; docs/ALGORITHMS.md, "The best version").
///
/// A round's score is the weighted mean Σ w_a·m_a / Σ w_a of the kept answers' means m_a over n_a rows, so its
/// variance is Σ w_a²·σ²/n_a / (Σ w_a)², with σ² one row's variance. Each answer tells its own rows' variance
/// (accuracy: p(1 − p), binomial; loss: from Σ ℓ_i², update option 5); σ² is their median, so an agent that
/// lies about its spread moves nothing unless half of the answers lie with it.
public enum ScoreSpread {
    /// One row's variance of the 0/1 "predicted right" over `rows` rows whose mean is `accuracy` (unbiased,
    /// ·n/(n − 1)); nil for fewer than 2 rows or an accuracy outside [0, 1].
    public static func accuracyVariance(accuracy: Double, rows: Int64) -> Double? {
        guard rows >= 2, (0...1).contains(accuracy) else { return nil }
        let n = Double(rows)
        return accuracy * (1 - accuracy) * n / (n - 1)
    }

    /// One row's variance of the loss over `rows` rows with mean `loss` and Σ ℓ_i² = `squares` (unbiased);
    /// nil for fewer than 2 rows or values that are not finite.
    public static func lossVariance(loss: Double, squares: Double, rows: Int64) -> Double? {
        guard rows >= 2, loss.isFinite, squares.isFinite else { return nil }
        let n = Double(rows)
        return max(0, (squares - n * loss * loss) / (n - 1))
    }

    /// The standard error of a weighted mean of per-answer means (see the type's comment). Nil without answers,
    /// without weight, or when fewer than half of the answers tell their rows' variance.
    public static func standardError(_ answers: [(weight: Double, rows: Int64, rowVariance: Double?)]) -> Double? {
        let variances = answers.compactMap(\.rowVariance).filter { $0.isFinite && $0 >= 0 }
        guard 2 * variances.count >= answers.count, let median = variances.median else { return nil }
        var total = 0.0, spread = 0.0
        for answer in answers where answer.weight > 0 {
            total += answer.weight
            spread += answer.weight * answer.weight / Double(max(1, answer.rows))
        }
        guard total > 0 else { return nil }
        return (median * spread).squareRoot() / total
    }

    /// Checks an answer's Σ ℓ_i² against its own mean loss over its rows: for losses ≥ 0 (both built-in losses
    /// are) n·L² ≤ Σ ℓ_i² ≤ (n·L)² (Cauchy–Schwarz; a sum of squares of non-negative terms is at most the square
    /// of their sum), to a relative 10⁻³ for the float32 `evalLoss`.
    public static func check(squares: Double, loss: Double, rows: Int64) throws(LossSquaresError) {
        guard squares.isFinite else { throw .notFinite }
        let n = Double(max(0, rows))
        let lower = n * loss * loss, upper = n * n * loss * loss
        guard squares >= lower * (1 - 1e-3) - 1e-12, squares <= upper * (1 + 1e-3) + 1e-12 else {
            throw .outOfBounds(squares: squares, lower: lower, upper: upper)
        }
    }
}

public enum LossSquaresError: Error, Hashable, Sendable, CustomStringConvertible {
    case notFinite
    /// Outside n·L² ≤ Σ ℓ² ≤ (n·L)².
    case outOfBounds(squares: Double, lower: Double, upper: Double)

    public var description: String {
        switch self {
        case .notFinite: "the loss's sum of squares is not finite"
        case .outOfBounds(let q, let lower, let upper):
            "the loss's sum of squares \(q) is outside what the answer's rows and loss allow, [\(lower), \(upper)] (n·L² ≤ Σℓ² ≤ (n·L)²)"
        }
    }
}
