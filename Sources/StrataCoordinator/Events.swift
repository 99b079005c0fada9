import StrataCore
import StrataWire

/// What an operator watching the coordinator is told, besides logs.
public enum CoordinatorEvent: Sendable {
    /// Every endpoint is bound (ports resolved when 0 was asked for).
    case listening(ListeningAddresses)
    case restored(version: Int64, committedUpdates: Int64)
    case versionCommitted(version: Int64, lane: Int, updates: Int, meanStaleness: Double)
    case tiersChanged([TierMove])
    case healthChanged([HealthTransition])
    case evaluated(EvaluationResult)
    /// The divergence guard stepped every model back to the best version and lowered the server step.
    case divergenceRecovered(DivergenceReport)
    case stopped(CoordinatorSummary)
}

public struct DivergenceReport: Sendable, Hashable, Codable {
    /// loss-rose, non-finite-loss, non-finite-model or refusals (the metric's label).
    public var cause: String
    /// The cause with its numbers.
    public var detail: String
    /// The version whose parameters every model now has (0: the initial model, when none was evaluated).
    public var bestVersion: Int64
    public var bestLoss: Double?
    /// The latest version before the step back, and the first version holding the restored model.
    public var fromVersion: Int64
    public var restoredVersion: Int64
    /// The factor on the configured server step from now on, and the server learning rate it gives.
    public var stepScale: Double
    public var serverLearningRate: Double
    /// Recoveries so far in this run.
    public var recoveries: Int
}

public struct ListeningAddresses: Sendable, Hashable {
    public var agents: Endpoint
    public var admin: Endpoint?
    public var metrics: Endpoint?
}

public struct EvaluationResult: Sendable, Hashable, Codable {
    public var version: Int64
    public var accuracy: Double
    public var loss: Double
    /// Metrics pooled from the agents' evaluation statistics (update option 2), by name: rmse, mae, r2 for a
    /// linear model, macro-f1 and (two classes) auc for a softmax one. Empty when no answer carried statistics.
    public var metrics: [String: Double]
    /// Answers that carried evaluation statistics.
    public var statisticsClients: Int
    public var samples: Int64
    /// Agents that answered.
    public var clients: Int
    /// Agents asked that were still connected when the round closed (or answered).
    public var expectedClients: Int
    /// Agents the round asked, and the answers its quorum needed to count.
    public var askedClients: Int
    public var requiredClients: Int
    /// It had its quorum: it counted for the target, the best version and patience.
    public var counted: Bool
    /// The target metric, this round's value of it, and whether it made this version the best.
    public var metric: String
    public var score: Double?
    public var newBest: Bool
    /// Seconds from the coordinator's start to the evaluation's result.
    public var elapsedSeconds: Double
    /// Seconds from the coordinator's start to the creation of the evaluated version (for accuracy-vs-time curves).
    public var versionElapsedSeconds: Double
    /// Sample-weighted accuracy per tier (tiers that answered).
    public var tierAccuracies: [Int: Double]
    /// Model bytes on the wire until the evaluated version was made (this process).
    public var traffic: Traffic = Traffic()

    /// Every metric the round reports, by name (what `TargetMetric.value(in:)` reads): a new metric is one more entry.
    public static func scores(accuracy: Double, loss: Double, metrics: [String: Double] = [:]) -> [String: Double] {
        metrics.merging(["accuracy": accuracy, "loss": loss]) { _, fixed in fixed }
    }

    /// This round's value of a metric by name (accuracy, loss, or a pooled one), nil when it was not reported.
    public func value(_ name: String) -> Double? { Self.scores(accuracy: accuracy, loss: loss, metrics: metrics)[name] }
}

public enum StopReason: String, Sendable, Codable {
    case targetReached = "target-reached"
    case maxVersions = "max-versions"
    case maxDuration = "max-duration"
    /// The target metric did not improve for --patience.
    case patience = "patience"
    /// A run with no end condition: the target metric did not improve for the default patience.
    case defaultEnd = "default-end"
    case signal = "signal"
    case failure = "failure"

    public init(_ reason: EndReason) {
        switch reason {
        case .targetReached: self = .targetReached
        case .patience: self = .patience
        case .defaultEnd: self = .defaultEnd
        case .maxDuration: self = .maxDuration
        case .maxVersions: self = .maxVersions
        }
    }
}

public struct CoordinatorSummary: Sendable, Codable {
    public var mode: String
    /// Why the run ended; `detail` says it in a sentence.
    public var reason: StopReason
    /// The target metric and its target (`targetAccuracy` repeats the latter when the metric is accuracy).
    public var targetMetric: String
    public var target: Double?
    public var targetAccuracy: Double?
    public var targetReached: Bool
    public var finalVersion: Int64
    public var lastEvaluation: EvaluationResult?
    public var bestAccuracy: Double?
    /// The best version by the target metric (kept; `stratactl export-model best`), also from before a restart.
    public var best: BestModelReport?
    /// Seconds from start to the creation of the first version that reached the target.
    public var timeToTargetSeconds: Double?
    public var tierCount: Int
    public var updatesAccepted: Int64
    public var updatesRefused: Int64
    /// Model bytes on the wire in this process, and as they stood when the target was first seen reached.
    public var traffic: Traffic
    public var trafficAtTarget: Traffic?
    /// CPU seconds of the coordinator process (user + system) over the run.
    public var cpuSeconds: Double
    public var wallSeconds: Double
    public var detail: String?
}
