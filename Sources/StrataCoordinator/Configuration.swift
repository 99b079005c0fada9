import Foundation
import NIOCore
import StrataCore
import StrataTransport
import StrataWire

/// Everything the coordinator needs, as plain values. The executable builds it from flags.
public struct CoordinatorConfiguration: Sendable {
    public var host: String = "127.0.0.1"
    /// 0 picks a free port; the bound address is reported through `onListening`.
    public var port: Int = 7300
    public var tls: TLSConfiguration
    public var statePath: String
    /// Where updates that arrive in parts (models larger than a frame) are kept until they are folded: the
    /// state database's directory, so they take the disk the state already lives on, not memory.
    public var spool: UpdateSpool {
        UpdateSpool(directory: URL(fileURLWithPath: statePath).deletingLastPathComponent().path)
    }
    public var model: ModelSpec
    /// The model's starting parameters (`--initial-model`); nil: `model.initialParameters(seed:)`.
    public var initialParameters: [Float]?
    /// What version 0 of a new run holds.
    public var startingParameters: [Float] { initialParameters ?? model.initialParameters(seed: training.seed) }
    public var training: TrainingConfig = TrainingConfig(learningRate: 0.01, batchSize: 10, epochs: 20, seed: 1)
    public var aggregation = AggregationConfiguration()
    public var tiering = TieringConfiguration()
    public var stop = StopCondition()
    /// Evaluate every N-th global model version on every connected agent's evaluation rows (0 = never).
    public var evaluateEvery: Int = 1
    /// Also (or instead) evaluate the latest global version at most this often, on a timer (nil = off).
    public var evaluationInterval: Duration?
    public var evaluationTimeout: Duration = .seconds(30)
    /// No training task is handed out before this many agents are connected at once (the quorum). Once
    /// training started (durably: also after a restart) it goes on with whoever is connected.
    public var minClients: Int = 1
    public var heartbeatInterval: Duration = .seconds(2)
    /// A session with nothing received for this long is closed (a stalled peer).
    public var sessionIdleTimeout: Duration = .seconds(15)
    public var helloTimeout: Duration = .seconds(10)
    public var maxFrameBytes: Int = 64 * 1024 * 1024
    /// The largest task or update payload that travels in parts (§2 "Messages in parts"): the model's values
    /// plus a frame, or 0 when its messages fit a frame (no parts accepted). Follows from the model and
    /// `maxFrameBytes`.
    public var maxMessageBytes: Int {
        MessagePart.messageLimit(parameterCount: model.parameterCount, featureCount: model.featureCount, maxFrameBytes: maxFrameBytes)
    }
    /// The encoding agents are asked to send deltas in (welcome option 3); float32 is accepted whatever this says.
    public var updateEncoding: DeltaEncoding = .float32
    /// How train tasks carry the model to agents that can reconstruct it (capability bit 4): float32, or a
    /// difference from the agent's previous train task in this encoding (task option 0x8002).
    public var taskEncoding: DeltaEncoding = .float32
    /// The most memory the copies of what each agent holds may take (`taskEncoding`); over it, float32 tasks.
    public var taskEncodingMemoryBytes: Int = 256 << 20
    /// Pacing: the least time between two train tasks dispatched to one agent (nil: none).
    public var minTaskInterval: Duration?
    /// Adaptive pacing: the least time between two train tasks of one agent is the slowest connected agent's
    /// smoothed latency divided by this (nil: off; `minTaskInterval` wins).
    public var paceRatio: Double?
    /// The most training (and evaluation) rows one agent may announce in its hello; every later count of
    /// its session is capped by what the hello announced.
    public var maxAgentSamples: Int64 = 1_000_000_000
    /// An update's weight counts at most this many times the median connected agent's announced training
    /// rows (nil: the agent's own count, up to its hello's).
    public var maxSampleWeightRatio: Double? = 1
    /// A replaced session's agent is told to come back after this long (never 0: a duplicate identity must
    /// not turn into a permanent exit of the honest agent).
    public var replacedRetryAfter: Duration = .seconds(30)
    /// Connection limits of the agent port and the global budget for frames being received (ConnectionLimits.swift).
    public var connectionLimits = ConnectionLimitSettings()
    /// Sent to agents in `goodbye` when the coordinator drains on SIGTERM.
    public var drainRetryAfter: Duration = .seconds(5)
    /// What SIGTERM does with updates folded into open buffers or rounds.
    public var drainPolicy: DrainPolicy = .flush
    /// The failure detector's thresholds (nil: 3 heartbeat intervals and the session idle timeout).
    public var health: HealthPolicy?
    var effectiveHealthPolicy: HealthPolicy {
        health ?? HealthPolicy(suspectAfter: heartbeatInterval.seconds * 3, lostAfter: max(sessionIdleTimeout.seconds, heartbeatInterval.seconds * 3 + 1))
    }
    /// The admin API (mutual TLS, admin certificates); nil disables it. Port 0 picks a free port.
    public var admin: Endpoint? = Endpoint(host: "127.0.0.1", port: 7301)
    /// /metrics, /healthz, /readyz (plain HTTP; keep it on localhost or behind a firewall); nil disables it.
    public var metrics: Endpoint? = Endpoint(host: "127.0.0.1", port: 7302)
    /// Which global versions keep their parameters in the state database (every version keeps its row).
    public var modelRetention = ModelRetention(latest: 100, every: 100)
    /// How often the revocation list file (`tls.revocationListFile`) is checked for changes.
    public var revocationListPollInterval: Duration = .seconds(2)
    /// Federated standardisation and the label vocabulary: the statistics phase before training.
    public var preprocessing = PreprocessingSettings()
    /// How often deadlines (round deadlines, buffer timeouts, re-tiering, evaluation timer) are checked.
    public var tickInterval: Duration = .milliseconds(50)

    public init(tls: TLSConfiguration, statePath: String, model: ModelSpec) {
        self.tls = tls
        self.statePath = statePath
        self.model = model
    }
}

public struct Endpoint: Sendable, Hashable {
    public var host: String
    public var port: Int
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
}

public enum DrainPolicy: String, Sendable, Hashable, Codable, CaseIterable {
    /// Step every non-empty buffer and open round with what it has, commit, then say goodbye.
    case flush
    /// Say goodbye at once; folded updates stay pending at their agents and are sent again after the restart.
    case abandon
}

public struct AggregationConfiguration: Sendable, Hashable {
    public var mode: AggregationMode = .strata
    /// The rules' hyperparameters (buffer size, staleness, server optimizer, rounds, TiFL selection...).
    public var rule = RuleSettings()
    /// L2 bound on a delta; larger deltas are refused. nil disables the check.
    public var maxUpdateNorm: Float? = 1.0e4
    /// When the coordinator steps the models back to the best version and lowers the server step.
    public var divergence = DivergencePolicy()
    public init() {}
}

public struct TieringConfiguration: Sendable, Hashable {
    public var policy = TieringPolicy()
    /// Operator pins: client id → tier (0 = fastest).
    public var pins: [String: Int] = [:]
    /// Re-tiering period (hysteresis counts periods).
    public var retierInterval: Duration = .seconds(10)
    /// Tiers are formed once every connected client is profiled, or this long after the first agent joined.
    public var formationTimeout: Duration = .seconds(30)
    /// Tiers form before an agent is profiled once its task has been out this many times the slowest profiled
    /// agent's latency (`TierFormation`); 0 waits for every profile (or the formation timeout).
    public var stragglerFactor: Double = 4
    public init() {}
}

public struct StopCondition: Sendable, Hashable {
    /// The metric that decides the best version, the target and what counts as an improvement.
    public var targetMetric: TargetMetric = .accuracy
    /// Stop when a counted evaluation reaches this value of `targetMetric` (>= or <= by its direction).
    public var target: Double?
    public var maxVersions: Int64?
    public var maxDuration: Duration?
    /// Stop when `targetMetric` has not improved by its margin for this long (since training started or the
    /// last improvement).
    public var patience: Duration?
    /// The patience that ends a run with no target, patience, duration or version limit (the default end).
    public var defaultPatience: Duration = .milliseconds(Int64(EndConditions.defaultEndPatience * 1000))
    /// An evaluation answered by fewer agents than this is reported but does not count towards the target
    /// (the first versions are often evaluated by the first agent alone).
    public var minEvaluationClients: Int = 1
    /// The fraction of the agents an evaluation round asked whose answers it needs to count towards the target.
    public var evaluationQuorum: Double = 0.5
    /// How the answers combine: capped weights, trimmed over agents.
    public var evaluationCombination = EvaluationCombination()

    public init(targetAccuracy: Double? = nil, maxVersions: Int64? = nil, maxDuration: Duration? = nil) {
        if let targetAccuracy {
            self.targetMetric = .accuracy
            self.target = targetAccuracy
        }
        self.maxVersions = maxVersions
        self.maxDuration = maxDuration
    }

    /// The target when the target metric is accuracy (what `--target-accuracy` sets).
    public var targetAccuracy: Double? { targetMetric == .accuracy ? target : nil }

    /// The pure end conditions (StrataCore's `RunProgress` decides on them).
    public var endConditions: EndConditions {
        EndConditions(metric: targetMetric, target: target, patience: patience?.seconds, maxDuration: maxDuration?.seconds,
                      maxVersions: maxVersions, defaultPatience: defaultPatience.seconds)
    }

    /// When an evaluation round counts.
    public var quorum: EvaluationQuorum { EvaluationQuorum(minimumAnswers: minEvaluationClients, fraction: evaluationQuorum) }
}

/// The statistics phase (docs/PROTOCOL.md §4, docs/ALGORITHMS.md "Federated standardisation").
public struct PreprocessingSettings: Sendable, Hashable {
    /// Gather the agents' statistics before training and standardise every feature (and a regression
    /// target) with the federated mean and standard deviation; text labels get their vocabulary this way too.
    public var standardize = true
    /// Given statistics instead of gathered ones (`--preprocessing-file`): used as is, no statistics phase.
    public var fixed: Preprocessing?
    /// Answers to wait for before fixing the preprocessing.
    public var statisticsAgents = 3
    /// Fix it with the answers at hand (at least one) this long after the first statistics task was sent.
    public var statisticsTimeout: Duration = .seconds(30)
    /// Robust merge of the agents' summaries.
    public var standardization = FederatedStandardization()
    public init() {}
}
