import StrataCore

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
    public var samples: Int64
    public var clients: Int
    public var expectedClients: Int
    /// Seconds from the coordinator's start to the evaluation's result.
    public var elapsedSeconds: Double
    /// Seconds from the coordinator's start to the creation of the evaluated version (for accuracy-vs-time curves).
    public var versionElapsedSeconds: Double
    /// Sample-weighted accuracy per tier (tiers that answered).
    public var tierAccuracies: [Int: Double]
}

public enum StopReason: String, Sendable, Codable {
    case targetReached = "target-reached"
    case maxVersions = "max-versions"
    case maxDuration = "max-duration"
    case signal = "signal"
    case failure = "failure"
}

public struct CoordinatorSummary: Sendable, Codable {
    public var mode: String
    public var reason: StopReason
    public var targetAccuracy: Double?
    public var targetReached: Bool
    public var finalVersion: Int64
    public var lastEvaluation: EvaluationResult?
    public var bestAccuracy: Double?
    /// Seconds from start to the creation of the first version that reached the target.
    public var timeToTargetSeconds: Double?
    public var tierCount: Int
    public var updatesAccepted: Int64
    public var updatesRefused: Int64
    public var wallSeconds: Double
    public var detail: String?
}
