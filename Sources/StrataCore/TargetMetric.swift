/// The metric a run is judged by: which evaluated model version is the best one (kept for ever, exported by
/// `stratactl export-model best`), when the target is reached, and what counts as an improvement for
/// `--patience`. It names the metric, says which direction is better and how much better an improvement must
/// be; everything that compares scores goes through it. Accuracy and loss come from every answer; RMSE, MAE,
/// R², macro-F1 and AUC are pooled from the agents' evaluation statistics (`EvaluationMetrics.swift`); a new
/// metric is one more `static let` here, added to `all`, and one more entry in the scores an evaluation
/// reports (`EvaluationResult.scores` on the coordinator) — no comparison logic changes.
public struct TargetMetric: Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Direction: String, Sendable, Hashable, Codable {
        case higherIsBetter = "higher-is-better"
        case lowerIsBetter = "lower-is-better"
    }

    /// How much better than the reference a score must be to count as an improvement (patience).
    public enum Margin: Sendable, Hashable, Codable, CustomStringConvertible {
        /// By at least this much, in the metric's units (for bounded metrics such as accuracy).
        case absolute(Double)
        /// By at least this fraction of the reference's magnitude (for unbounded ones such as a loss).
        case relative(Double)

        public var description: String {
            switch self {
            case .absolute(let m): "\(m)"
            case .relative(let f): "\(f * 100) %"
            }
        }
    }

    /// The name an evaluation reports the metric under, and what flags and outputs call it.
    public var name: String
    public var direction: Direction
    public var margin: Margin

    public init(name: String, direction: Direction, margin: Margin) {
        self.name = name
        self.direction = direction
        self.margin = margin
    }

    /// Sample-weighted evaluation accuracy (softmax models). An improvement is at least 0.001 (0.1 point).
    public static let accuracy = TargetMetric(name: "accuracy", direction: .higherIsBetter, margin: .absolute(0.001))
    /// Mean evaluation loss (cross-entropy, or half the squared error for linear models). An improvement is
    /// at least 0.1 % of the reference loss.
    public static let loss = TargetMetric(name: "loss", direction: .lowerIsBetter, margin: .relative(0.001))

    /// Root mean squared error of a linear model, in the target's units (pooled from the agents' evaluation
    /// statistics). An improvement is at least 0.1 % of the reference.
    public static let rmse = TargetMetric(name: "rmse", direction: .lowerIsBetter, margin: .relative(0.001))
    /// Mean absolute error of a linear model, in the target's units. An improvement is at least 0.1 %.
    public static let mae = TargetMetric(name: "mae", direction: .lowerIsBetter, margin: .relative(0.001))
    /// Coefficient of determination of a linear model (1 is perfect). An improvement is at least 0.001.
    public static let r2 = TargetMetric(name: "r2", direction: .higherIsBetter, margin: .absolute(0.001))
    /// Unweighted mean of the per-class F1 scores (softmax models). An improvement is at least 0.001.
    public static let macroF1 = TargetMetric(name: "macro-f1", direction: .higherIsBetter, margin: .absolute(0.001))
    /// Area under the ROC curve (softmax models with two classes). An improvement is at least 0.001.
    public static let auc = TargetMetric(name: "auc", direction: .higherIsBetter, margin: .absolute(0.001))

    /// Every metric a run can target, for flags and their help.
    public static let all: [TargetMetric] = [.accuracy, .loss, .rmse, .mae, .r2, .macroF1, .auc]

    /// The metrics pooled from the agents' evaluation statistics (update option 2) rather than combined from
    /// every answer's accuracy and loss: a round counts for them by the answers that carried statistics.
    public var isPooled: Bool { self != .accuracy && self != .loss }

    /// Why this metric does not fit `model` (nil when it does): accuracy, macro-F1 and AUC are for softmax
    /// models (AUC for two classes), RMSE, MAE and R² for linear ones; loss fits every model.
    public func problem(for model: ModelSpec) -> String? {
        switch name {
        case "accuracy", "macro-f1":
            return model.isClassifier ? nil
                : "\(name) is a classification metric, the model predicts a number: use rmse, mae, r2 or loss"
        case "auc":
            if !model.isClassifier { return "auc is a classification metric, the model predicts a number: use rmse, mae, r2 or loss" }
            return model.outputCount == 2 ? nil
                : "auc needs two classes, the model has \(model.outputCount): use macro-f1, accuracy or loss"
        case "rmse", "mae", "r2":
            return !model.isClassifier ? nil
                : "\(name) is a regression metric, the model predicts classes: use accuracy, macro-f1\(model.outputCount == 2 ? ", auc" : "") or loss"
        default:
            return nil
        }
    }

    public static func named(_ name: String) -> TargetMetric? { all.first { $0.name == name } }

    public var description: String { name }

    /// Strictly better (the best version is replaced only by a strictly better one; ties keep the older).
    public func isBetter(_ score: Double, than other: Double) -> Bool {
        guard score.isFinite else { return false }
        guard other.isFinite else { return true }
        return direction == .higherIsBetter ? score > other : score < other
    }

    /// Better than `reference` by more than the margin: what resets `--patience`.
    public func improves(_ score: Double, on reference: Double) -> Bool {
        guard score.isFinite else { return false }
        guard reference.isFinite else { return true }
        let step: Double
        switch margin {
        case .absolute(let m): step = m
        case .relative(let f): step = f * abs(reference)
        }
        return direction == .higherIsBetter ? score > reference + step : score < reference - step
    }

    /// Not worse than `other` by more than `tolerance` (≥ 0): within chance of it.
    public func ties(_ score: Double, with other: Double, within tolerance: Double) -> Bool {
        guard score.isFinite, other.isFinite, tolerance.isFinite, tolerance >= 0 else { return false }
        return direction == .higherIsBetter ? score >= other - tolerance : score <= other + tolerance
    }

    /// At or beyond the target (>= for higher-is-better, <= for lower-is-better).
    public func reaches(_ score: Double, target: Double) -> Bool {
        guard score.isFinite else { return false }
        return direction == .higherIsBetter ? score >= target : score <= target
    }

    /// This metric's value among an evaluation's scores (keyed by metric name), if it reports it.
    public func value(in scores: [String: Double]) -> Double? { scores[name] }

    /// "by more than 0.001" / "by more than 0.1 %", for logs and help texts.
    public var improvementText: String { "by more than \(margin)" }
}
