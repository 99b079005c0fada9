// The aggregation-rule protocol: every mode (Strata's own rule and each baseline) is one type that
// conforms to it, so a new rule is one new file. Rules are pure state machines: the coordinator feeds
// them clients, updates and the clock, persists what they produce, and does all the I/O.

/// The modes a coordinator can run on the same agents and data.
public enum AggregationMode: String, CaseIterable, Sendable, Codable {
    /// Asynchronous FedBuff-style buffer per latency tier, FedAT cross-tier weights at the global model.
    case strata
    /// Synchronous rounds over C clients (McMahan et al. 2017).
    case fedavg
    /// Synchronous rounds inside one chosen tier per round (Chai et al. 2020).
    case tifl
    /// Synchronous inside each tier, asynchronous across tiers (Chai et al. 2021).
    case fedat
    /// Mix every update into the model at once (Xie et al. 2019).
    case fedasync
    /// One flat buffer of K updates, no tiers (Nguyen et al. 2022).
    case fedbuff

    /// Whether the mode needs latency tiers.
    public var usesTiers: Bool { self == .strata || self == .tifl || self == .fedat }

    /// Whether a version's train tasks go out together, as one round (one per tier for fedat); the
    /// asynchronous modes hand out a version's tasks one by one as agents come back.
    public var dispatchesRounds: Bool { self == .fedavg || self == .tifl || self == .fedat }

    public func makeRule(settings: RuleSettings, parameters: [Float]) -> any AggregationRule {
        switch self {
        case .strata: StrataRule(settings: settings, parameters: parameters)
        case .fedavg: FedAvgRule(settings: settings, parameters: parameters)
        case .tifl: TiFLRule(settings: settings, parameters: parameters)
        case .fedat: FedATRule(settings: settings, parameters: parameters)
        case .fedasync: FedAsyncRule(settings: settings, parameters: parameters)
        case .fedbuff: FedBuffRule(settings: settings, parameters: parameters)
        }
    }
}

/// Every rule's hyperparameters, as one plain value (each rule reads the ones it uses).
public struct RuleSettings: Sendable, Hashable {
    /// K: updates per buffer before a (tier) model steps (strata, fedbuff). A tier's buffer never waits for
    /// more updates than the tier has members.
    public var bufferSize: Int = 10
    /// A non-empty buffer older than this steps anyway (seconds; nil: never), so a tier whose agents left
    /// does not hold its last updates forever.
    public var bufferTimeout: Double? = 10
    public var staleness: StalenessFunction = .fedBuff
    /// The server optimiser every lane steps with (SGD, FedAdam, FedYogi, FedAdagrad) and its hyperparameters.
    public var serverOptimizer = ServerOptimizerSettings.sgd(learningRate: 1.0, momentum: 0)
    /// Updates more than this many versions (of their lane) behind are refused as too stale.
    public var maxStaleness: Int = 100
    /// α of FedAsync mixing (fedasync, and strata with `tierMixing = .fedAsync`).
    public var mixingAlpha: Double = 0.6
    /// How strata folds updates inside a tier.
    public var tierMixing: TierMixing = .buffer
    /// How strata combines tier models into the global model (fedat always uses `.models`).
    public var crossTier: CrossTierCombination = .deltas
    /// Strata's cross-tier weights (fedat always uses FedAT's).
    public var crossTierWeighting: CrossTierWeighting = .fedAT
    /// C: clients per synchronous round (fedavg, tifl; per tier for fedat). 0 = every idle connected client.
    public var clientsPerRound: Int = 0
    /// A synchronous round closes at this many seconds with what it has (nil: waits for every selected client).
    public var roundDeadline: Double? = nil
    /// Over-selection: select ceil(C·(1+r)) clients and close the round at the first C updates.
    public var overSelection: Double = 0
    /// TiFL's tier selection.
    public var tierSelection: TierSelection = .adaptive
    /// TiFL adaptive: rounds between accuracy checks (I).
    public var adaptiveInterval: Int = 5
    /// TiFL adaptive: planned rounds R; each tier starts with ceil(R / tiers) credits.
    public var plannedRounds: Int = 1000
    /// Seed of the rules' own random choices (client and tier selection).
    public var seed: UInt64 = 1
    /// What one agent can do to a buffer: adaptive norm bound, one update per buffer, robust folds.
    public var robustness = Robustness()

    public init() {}

    /// The defaults of a mode: the published rules run as published (η_g = 1, no momentum); Strata's own
    /// rule steps its damped tier updates with η_g = 2 and momentum 0.5 (measured in docs/EXPERIMENTS.md).
    public static func defaults(for mode: AggregationMode) -> RuleSettings {
        var settings = RuleSettings()
        if mode == .strata {
            settings.serverOptimizer = ServerOptimizerSettings.sgd(learningRate: 2, momentum: 0.5)
            settings.crossTierWeighting = .inverse
        }
        return settings
    }

    public func validate() throws {
        func bad(_ s: String) -> StrataCoreError { .invalidArgument(s) }
        guard bufferSize >= 1 else { throw bad("buffer size must be at least 1") }
        try robustness.validate()
        try serverOptimizer.validate()
        if let t = bufferTimeout, !(t > 0 && t.isFinite) { throw bad("buffer timeout must be positive") }
        guard maxStaleness >= 0 else { throw bad("max staleness must be >= 0") }
        guard mixingAlpha > 0, mixingAlpha <= 1 else { throw bad("mixing alpha must be in (0, 1]") }
        guard clientsPerRound >= 0 else { throw bad("clients per round must be >= 0") }
        if let d = roundDeadline, !(d > 0 && d.isFinite) { throw bad("round deadline must be positive") }
        guard overSelection >= 0, overSelection <= 10 else { throw bad("over-selection must be in [0, 10]") }
        guard adaptiveInterval >= 1 else { throw bad("adaptive interval must be at least 1") }
        guard plannedRounds >= 1 else { throw bad("planned rounds must be at least 1") }
        if case .fixed(let p) = tierSelection {
            guard !p.isEmpty, p.allSatisfy({ $0 >= 0 && $0.isFinite }), p.reduce(0, +) > 0 else {
                throw bad("tier probabilities must be non-negative numbers with a positive sum")
            }
        }
    }
}

/// How a tier's new model enters the global model.
public enum CrossTierCombination: String, Sendable, Hashable, Codable {
    /// FedAT: the global model is the cross-tier weighted average of the tiers' latest models.
    case models
    /// Strata: the tier's step (its new model minus the model it started from) is added with its cross-tier
    /// weight, scaled by the number of live tiers; every tier continues from the new global model.
    case deltas
}

/// Cross-tier weights: both give tiers that update less often more weight.
public enum CrossTierWeighting: String, Sendable, Hashable, Codable {
    /// FedAT: the k-th fastest tier gets the k-th slowest tier's push count, w = T_{M+1−i} / T.
    case fedAT = "fedat"
    /// w_i ∝ 1 / T_i: every live tier contributes equally per unit of time (equal to FedAT's with 2 tiers).
    case inverse
}

public enum TierMixing: String, Sendable, Hashable, Codable {
    /// FedBuff-style: K updates, weighted by samples × staleness factor, then one server step.
    case buffer
    /// FedAsync-style: every update mixed in at once with α·s(σ).
    case fedAsync = "fedasync"
}

public enum TierSelection: Sendable, Hashable {
    /// TiFL adaptive selection with credits.
    case adaptive
    /// TiFL static selection with these per-tier probabilities (fastest first; normalised; missing tiers get 0).
    case fixed([Double])
}

/// What a rule sees of a connected client.
public struct ClientView: Sendable, Hashable {
    public var id: String
    /// The client's latency tier, or nil before tiers are formed.
    public var tier: Int?
    public init(id: String, tier: Int?) {
        self.id = id
        self.tier = tier
    }
}

/// A training task the rule wants handed out now: train on lane `lane`'s current model.
public struct Assignment: Sendable, Hashable {
    public var clientID: String
    public var lane: Int
    public init(clientID: String, lane: Int) {
        self.clientID = clientID
        self.lane = lane
    }
}

/// A validated update as a rule sees it.
public struct RuleUpdate: Sendable {
    public var taskID: Int64
    public var clientID: String
    /// The lane (model) the task was dispatched from.
    public var lane: Int
    /// That lane's version the task was based on.
    public var baseVersion: Int64
    public var sampleCount: Int64
    /// x_local − x_base: an array, or the values where they were received (the coordinator passes the
    /// update frame's tensors, validated, so the fold reads them without an intermediate copy).
    public var delta: any Float32Segments
    /// ‖delta‖₂ (validation computed it already).
    public var norm: Double
    public init(taskID: Int64, clientID: String, lane: Int, baseVersion: Int64, sampleCount: Int64, delta: any Float32Segments,
                norm: Double? = nil) {
        self.taskID = taskID
        self.clientID = clientID
        self.lane = lane
        self.baseVersion = baseVersion
        self.sampleCount = sampleCount
        self.delta = delta
        self.norm = norm ?? SquareSums.of(delta).squareRoot()
    }
}

public enum UpdateDisposition: Sendable, Hashable {
    /// Folded into its lane; it will be part of a later `AggregationOutcome`.
    case folded(staleness: Int64, weight: Double)
    /// Not usable (too stale, its round closed, unknown lane); the agent may drop it.
    case refused(RefusalReason, String)
}

public enum RefusalReason: Sendable, Hashable {
    case tooStale
    case roundClosed
    case invalid
    /// The agent already has an update in the open buffer and one queued behind it.
    case overShare
}

/// One update inside an aggregation, for the durable record.
public struct FoldedUpdate: Sendable, Hashable {
    public var taskID: Int64
    public var clientID: String
    public var baseVersion: Int64
    public var staleness: Int64
    public var weight: Double
    public init(taskID: Int64, clientID: String, baseVersion: Int64, staleness: Int64, weight: Double) {
        self.taskID = taskID
        self.clientID = clientID
        self.baseVersion = baseVersion
        self.staleness = staleness
        self.weight = weight
    }
}

/// One step of one lane and the global model it produced. The coordinator persists it in one transaction
/// before it tells any agent that its update is committed.
public struct AggregationOutcome: Sendable {
    public var lane: Int
    public var laneVersion: Int64
    public var laneParameters: [Float]
    public var globalVersion: Int64
    public var globalParameters: [Float]
    /// Provenance: every lane's version combined into this global model (index = lane).
    public var combinedLaneVersions: [Int64]
    /// The cross-tier weight each lane had (index = lane; 0 for an inactive lane).
    public var laneWeights: [Double]
    /// T of the stepped lane after this push (what a restart restores its count from).
    public var lanePushes: Int64
    public var updates: [FoldedUpdate]
    /// What triggered it: "buffer", "timeout", "round", "deadline", "update".
    public var trigger: String
    public var meanStaleness: Double {
        updates.isEmpty ? 0 : Double(updates.reduce(0) { $0 + $1.staleness }) / Double(updates.count)
    }
    public var totalWeight: Double { updates.reduce(0) { $0 + $1.weight } }
}

/// A lane's durable state, for restoring a rule after a restart.
public struct LaneState: Sendable, Hashable {
    public var version: Int64
    public var parameters: [Float]
    /// T_i: times this lane pushed into the global model, counted from 1.
    public var pushes: Int64
    public init(version: Int64, parameters: [Float], pushes: Int64) {
        self.version = version
        self.parameters = parameters
        self.pushes = pushes
    }
}

/// One aggregation mode. The coordinator calls, in any order: `schedule` whenever clients become idle
/// or connect, `accept` for each validated update, `aggregations` after accepts and on a timer, and
/// persists each returned outcome before acknowledging its updates as committed.
public protocol AggregationRule: Sendable {
    var mode: AggregationMode { get }
    var globalVersion: Int64 { get }
    var globalParameters: [Float] { get }
    var laneCount: Int { get }
    /// The adaptive norm bound deltas are clipped to now (nil: off, or still learning the scale).
    var clipBound: Double? { get }
    /// The model and version a task on `lane` starts from.
    func lane(_ lane: Int) -> LaneState

    /// Restores the state persisted by earlier outcomes (global model and each lane).
    mutating func restore(globalVersion: Int64, global: [Float], lanes: [LaneState])
    /// Latency tiers were formed (or restored) with `count` tiers.
    mutating func tiersFormed(count: Int)
    /// Tasks to hand out now. `idle`: connected clients without an outstanding training task;
    /// `connected`: every connected client (rules use it to tell live tiers from empty ones).
    mutating func schedule(idle: [ClientView], connected: [ClientView], now: Double) -> [Assignment]
    /// Folds one validated update.
    mutating func accept(_ update: RuleUpdate, now: Double) -> UpdateDisposition
    /// The steps that are due now (full buffers, finished rounds, passed deadlines).
    mutating func aggregations(now: Double) -> [AggregationOutcome]
    /// A client left: synchronous rules stop waiting for it.
    mutating func clientLeft(_ clientID: String)
    /// Draining: steps every non-empty buffer and closes every open round with the updates it has.
    mutating func flush(now: Double) -> [AggregationOutcome]
    /// The latest evaluation's sample-weighted accuracy per tier (TiFL's adaptive selection uses it).
    mutating func observeEvaluation(tierAccuracies: [Int: Double])
    /// The divergence guard's factor on the configured server step (1 until the guard lowers it).
    var stepScale: Double { get }
    /// The divergence guard steps back: every lane's model and the global model become `parameters`, the
    /// server step becomes `stepScale` × the configured one, every lane's optimiser state starts afresh,
    /// and open buffers and rounds are dropped (their updates are returned, to be refused). Updates based
    /// on the models stepped back from are refused as too stale. `discardingFrom`: the first global
    /// version among outcomes the caller dropped instead of persisting (nil: it kept all).
    mutating func rollBack(to parameters: [Float], stepScale: Double, discardingFrom: Int64?) -> Rollback
}

extension AggregationRule {
    public mutating func clientLeft(_ clientID: String) {}
    public mutating func flush(now: Double) -> [AggregationOutcome] { [] }
    public mutating func observeEvaluation(tierAccuracies: [Int: Double]) {}
    public mutating func tiersFormed(count: Int) {}
}
