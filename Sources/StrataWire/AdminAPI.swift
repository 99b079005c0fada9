import StrataCore

/// The admin API: JSON over HTTP/1.1 on the coordinator's admin port (mutual TLS, admin certificates only).
/// These types are the bodies, shared by the coordinator (which encodes them) and `stratactl` (which decodes
/// them); docs/OPERATIONS.md lists the routes. Field names are the JSON keys; times are seconds since 1970.
public enum AdminAPI {
    /// Path prefix of every route; a breaking change gets a new prefix.
    public static let prefix = "/v1"
}

public struct StatusReport: Codable, Sendable, Hashable {
    public var mode: String
    public var globalVersion: Int64
    /// Sample-weighted accuracy of the latest evaluated version, and that version.
    public var latestAccuracy: Double?
    public var latestEvaluatedVersion: Int64?
    public var bestAccuracy: Double?
    public var targetAccuracy: Double?
    public var uptimeSeconds: Double
    /// State restored and accepting agents (what /readyz reports).
    public var ready: Bool
    public var draining: Bool
    public var connectedClients: Int
    /// Every known client (connected or not) by health state: healthy, suspect, lost, evicted, unknown.
    public var clientsByHealth: [String: Int]
    public var tiers: [TierReport]
    public var updatesAccepted: Int64
    public var updatesRefused: Int64
    /// The best version by the target metric, with its score (nil until an evaluation counted; absent from
    /// older coordinators).
    public var best: BestModelReport?
    /// The target metric (accuracy, loss) and its target, if one was set.
    public var targetMetric: String?
    public var target: Double?
    /// --min-clients, and whether training still waits for that many agents to connect.
    public var minClients: Int?
    public var waitingForClients: Bool?
    /// The model kind (softmax, linear), and the latest evaluated version's metrics pooled from the agents'
    /// evaluation statistics (rmse, mae, r2 for linear; macro-f1, auc for softmax). Absent from older coordinators.
    public var model: String?
    public var latestMetrics: [String: Double]?
    /// The best counted score of the target metric so far. The best version is the latest within one standard
    /// error of it, so its own score may be a little worse. Absent from older coordinators.
    public var bestScoreSeen: Double?

    public init(mode: String, globalVersion: Int64, latestAccuracy: Double?, latestEvaluatedVersion: Int64?, bestAccuracy: Double?,
                targetAccuracy: Double?, uptimeSeconds: Double, ready: Bool, draining: Bool, connectedClients: Int,
                clientsByHealth: [String: Int], tiers: [TierReport], updatesAccepted: Int64, updatesRefused: Int64,
                best: BestModelReport? = nil, targetMetric: String? = nil, target: Double? = nil, minClients: Int? = nil, waitingForClients: Bool? = nil,
                model: String? = nil, latestMetrics: [String: Double]? = nil, bestScoreSeen: Double? = nil) {
        self.bestScoreSeen = bestScoreSeen
        self.model = model
        self.latestMetrics = latestMetrics
        self.best = best
        self.targetMetric = targetMetric
        self.target = target
        self.minClients = minClients
        self.waitingForClients = waitingForClients
        self.mode = mode
        self.globalVersion = globalVersion
        self.latestAccuracy = latestAccuracy
        self.latestEvaluatedVersion = latestEvaluatedVersion
        self.bestAccuracy = bestAccuracy
        self.targetAccuracy = targetAccuracy
        self.uptimeSeconds = uptimeSeconds
        self.ready = ready
        self.draining = draining
        self.connectedClients = connectedClients
        self.clientsByHealth = clientsByHealth
        self.tiers = tiers
        self.updatesAccepted = updatesAccepted
        self.updatesRefused = updatesRefused
    }
}

/// The best global version by the target metric: never dropped by retention, kept across restarts.
public struct BestModelReport: Codable, Sendable, Hashable {
    /// The target metric (accuracy, loss) and its direction (higher-is-better, lower-is-better).
    public var metric: String
    public var direction: String
    public var version: Int64
    /// The evaluation round's combined value of `metric`, and of accuracy and loss.
    public var score: Double
    public var accuracy: Double
    public var loss: Double
    /// Agents that answered that round, of the agents it asked.
    public var answered: Int
    public var asked: Int
    /// When the round closed.
    public var at: Double
    /// That round's metrics pooled from evaluation statistics (rmse, mae, r2, macro-f1, auc), when reported.
    public var metrics: [String: Double]?
    public init(metric: String, direction: String, version: Int64, score: Double, accuracy: Double, loss: Double, answered: Int, asked: Int, at: Double,
                metrics: [String: Double]? = nil) {
        self.metrics = metrics
        self.metric = metric
        self.direction = direction
        self.version = version
        self.score = score
        self.accuracy = accuracy
        self.loss = loss
        self.answered = answered
        self.asked = asked
        self.at = at
    }
}

/// One closed evaluation round: a point of the evaluation curve.
public struct EvaluationEntry: Codable, Sendable, Hashable {
    public var version: Int64
    /// Combined over the answers (capped weights, trimmed over agents).
    public var accuracy: Double
    public var loss: Double
    /// Agents that answered, of the agents the round asked; the answers its quorum needed.
    public var answered: Int
    public var asked: Int
    public var required: Int
    /// It had its quorum: it counted for the target, the best version and patience. A partial round never does.
    public var counted: Bool
    /// The target metric's value in this round, and whether it made the version the best.
    public var metric: String
    public var score: Double?
    public var best: Bool
    /// When the version was committed and when the round closed.
    public var versionCreatedAt: Double
    public var at: Double
    /// Metrics pooled from the answers' evaluation statistics (rmse, mae, r2, macro-f1, auc), and how many
    /// answers carried statistics; absent when none did (older agents) or from older coordinators.
    public var metrics: [String: Double]?
    public var statisticsAnswered: Int?
    public init(version: Int64, accuracy: Double, loss: Double, answered: Int, asked: Int, required: Int, counted: Bool, metric: String,
                score: Double?, best: Bool, versionCreatedAt: Double, at: Double, metrics: [String: Double]? = nil, statisticsAnswered: Int? = nil) {
        self.metrics = metrics
        self.statisticsAnswered = statisticsAnswered
        self.version = version
        self.accuracy = accuracy
        self.loss = loss
        self.answered = answered
        self.asked = asked
        self.required = required
        self.counted = counted
        self.metric = metric
        self.score = score
        self.best = best
        self.versionCreatedAt = versionCreatedAt
        self.at = at
    }
}

public struct EvaluationsReport: Codable, Sendable, Hashable {
    public var targetMetric: String
    /// Newest first.
    public var entries: [EvaluationEntry]
    /// The model kind (softmax, linear); absent from older coordinators.
    public var model: String?
    public init(targetMetric: String, entries: [EvaluationEntry], model: String? = nil) {
        self.targetMetric = targetMetric
        self.entries = entries
        self.model = model
    }
}

public struct TierReport: Codable, Sendable, Hashable {
    /// 0 = fastest.
    public var tier: Int
    public var members: [String]
    /// Smoothed latency (seconds) of the fastest and slowest member that has a profile.
    public var latencyMin: Double?
    public var latencyMax: Double?
    /// The tier model's version (its number of steps).
    public var version: Int64
    /// Updates accepted into this tier per second, over the last minute.
    public var updateRate: Double
    /// The tier's current weight in the cross-tier combination (nil where the mode has none).
    public var weight: Double?

    public init(tier: Int, members: [String], latencyMin: Double?, latencyMax: Double?, version: Int64, updateRate: Double, weight: Double?) {
        self.tier = tier
        self.members = members
        self.latencyMin = latencyMin
        self.latencyMax = latencyMax
        self.version = version
        self.updateRate = updateRate
        self.weight = weight
    }
}

public struct TiersReport: Codable, Sendable, Hashable {
    /// false until enough clients are profiled (or in a mode without tiers).
    public var formed: Bool
    public var tiers: [TierReport]
    /// Connected or known clients without a tier yet (still being profiled).
    public var unassigned: [String]
    public init(formed: Bool, tiers: [TierReport], unassigned: [String]) {
        self.formed = formed
        self.tiers = tiers
        self.unassigned = unassigned
    }
}

public struct ClientSummary: Codable, Sendable, Hashable {
    public var id: String
    public var connected: Bool
    /// healthy, suspect, lost, evicted, or unknown (never connected since the state was created).
    public var health: String
    public var healthSince: Double?
    public var healthReason: String?
    public var tier: Int?
    public var pinnedTier: Int?
    public var latencySeconds: Double?
    public var lastLatencySeconds: Double?
    public var latencySamples: Int64
    public var updatesAccepted: Int64
    public var updatesRefused: Int64
    public var sessions: Int64
    public var firstSeen: Double
    public var lastSeen: Double
    public var agentVersion: String
    public var trainSamples: Int64
    public var lastError: String?
    public var eviction: EvictionInfo?

    public init(id: String, connected: Bool, health: String, healthSince: Double?, healthReason: String?, tier: Int?, pinnedTier: Int?,
                latencySeconds: Double?, lastLatencySeconds: Double?, latencySamples: Int64, updatesAccepted: Int64, updatesRefused: Int64,
                sessions: Int64, firstSeen: Double, lastSeen: Double, agentVersion: String, trainSamples: Int64, lastError: String?,
                eviction: EvictionInfo?) {
        self.id = id
        self.connected = connected
        self.health = health
        self.healthSince = healthSince
        self.healthReason = healthReason
        self.tier = tier
        self.pinnedTier = pinnedTier
        self.latencySeconds = latencySeconds
        self.lastLatencySeconds = lastLatencySeconds
        self.latencySamples = latencySamples
        self.updatesAccepted = updatesAccepted
        self.updatesRefused = updatesRefused
        self.sessions = sessions
        self.firstSeen = firstSeen
        self.lastSeen = lastSeen
        self.agentVersion = agentVersion
        self.trainSamples = trainSamples
        self.lastError = lastError
        self.eviction = eviction
    }
}

public struct EvictionInfo: Codable, Sendable, Hashable {
    public var at: Double
    public var by: String
    public var reason: String
    public init(at: Double, by: String, reason: String) {
        self.at = at
        self.by = by
        self.reason = reason
    }
}

public struct ClientsReport: Codable, Sendable, Hashable {
    public var clients: [ClientSummary]
    public init(clients: [ClientSummary]) { self.clients = clients }
}

public struct ClientDetail: Codable, Sendable, Hashable {
    public var client: ClientSummary
    /// Most recent committed updates first: the latency history.
    public var updates: [UpdateEntry]
    public var refusals: [RefusalEntry]
    public var tierMoves: [TierMoveEntry]
    public var healthEvents: [HealthEventEntry]

    public init(client: ClientSummary, updates: [UpdateEntry], refusals: [RefusalEntry], tierMoves: [TierMoveEntry], healthEvents: [HealthEventEntry]) {
        self.client = client
        self.updates = updates
        self.refusals = refusals
        self.tierMoves = tierMoves
        self.healthEvents = healthEvents
    }
}

public struct UpdateEntry: Codable, Sendable, Hashable {
    public var taskID: Int64
    public var version: Int64
    public var tier: Int
    public var staleness: Int64
    public var weight: Double
    public var sampleCount: Int64
    /// Task dispatch to update arrival, seconds (nil for an update re-sent in a later session).
    public var latencySeconds: Double?
    public var receivedAt: Double
    public init(taskID: Int64, version: Int64, tier: Int, staleness: Int64, weight: Double, sampleCount: Int64, latencySeconds: Double?, receivedAt: Double) {
        self.taskID = taskID
        self.version = version
        self.tier = tier
        self.staleness = staleness
        self.weight = weight
        self.sampleCount = sampleCount
        self.latencySeconds = latencySeconds
        self.receivedAt = receivedAt
    }
}

public struct RefusalEntry: Codable, Sendable, Hashable {
    public var taskID: Int64
    /// The protocol's error code name (docs/PROTOCOL.md), e.g. too-stale, non-finite-value.
    public var code: String
    public var reason: String
    public var at: Double
    public init(taskID: Int64, code: String, reason: String, at: Double) {
        self.taskID = taskID
        self.code = code
        self.reason = reason
        self.at = at
    }
}

public struct TierMoveEntry: Codable, Sendable, Hashable {
    public var from: Int?
    public var to: Int
    /// formation, profiled, drift, pinned, operator.
    public var reason: String
    public var latencySeconds: Double?
    public var at: Double
    public init(from: Int?, to: Int, reason: String, latencySeconds: Double?, at: Double) {
        self.from = from
        self.to = to
        self.reason = reason
        self.latencySeconds = latencySeconds
        self.at = at
    }
}

public struct HealthEventEntry: Codable, Sendable, Hashable {
    public var from: String?
    public var to: String
    public var reason: String
    public var at: Double
    public init(from: String?, to: String, reason: String, at: Double) {
        self.from = from
        self.to = to
        self.reason = reason
        self.at = at
    }
}

public struct ModelEntry: Codable, Sendable, Hashable {
    public var version: Int64
    public var createdAt: Double
    /// What produced it: initial, buffer, round, flush, ...
    public var trigger: String
    /// The tier whose step produced it (nil for the initial model).
    public var tier: Int?
    /// Provenance: every tier's model version combined into it, and their weights.
    public var tierVersions: [Int64]
    public var tierWeights: [Double]
    public var updateCount: Int
    public var meanStaleness: Double
    /// Sample-weighted accuracy over the agents that evaluated it (nil if not evaluated).
    public var accuracy: Double?
    public var evaluatedBy: Int
    /// False when the coordinator's retention (`--keep-models`, `--keep-every`) dropped its parameters:
    /// the row stays, `export-model` refuses it. Absent (nil) from coordinators without retention.
    public var parametersKept: Bool?
    public init(version: Int64, createdAt: Double, trigger: String, tier: Int?, tierVersions: [Int64], tierWeights: [Double], updateCount: Int,
                meanStaleness: Double, accuracy: Double?, evaluatedBy: Int, parametersKept: Bool? = nil) {
        self.parametersKept = parametersKept
        self.version = version
        self.createdAt = createdAt
        self.trigger = trigger
        self.tier = tier
        self.tierVersions = tierVersions
        self.tierWeights = tierWeights
        self.updateCount = updateCount
        self.meanStaleness = meanStaleness
        self.accuracy = accuracy
        self.evaluatedBy = evaluatedBy
    }
}

public struct TierModelEntry: Codable, Sendable, Hashable {
    public var tier: Int
    public var version: Int64
    public var createdAt: Double
    /// The global version this tier step produced.
    public var globalVersion: Int64
    public init(tier: Int, version: Int64, createdAt: Double, globalVersion: Int64) {
        self.tier = tier
        self.version = version
        self.createdAt = createdAt
        self.globalVersion = globalVersion
    }
}

public struct ModelsReport: Codable, Sendable, Hashable {
    /// Newest first.
    public var global: [ModelEntry]
    /// Newest first.
    public var tiers: [TierModelEntry]
    public init(global: [ModelEntry], tiers: [TierModelEntry]) {
        self.global = global
        self.tiers = tiers
    }
}

/// One model version's parameters: float32 little-endian, base64, one entry per named tensor.
public struct ModelParameters: Codable, Sendable, Hashable {
    public struct Tensor: Codable, Sendable, Hashable {
        public var name: String
        public var shape: [Int]
        /// Always "float32" (little-endian).
        public var dtype: String
        public var data: String
        public init(name: String, shape: [Int], dtype: String, data: String) {
            self.name = name
            self.shape = shape
            self.dtype = dtype
            self.data = data
        }
    }
    public var version: Int64
    /// linear-regression | logistic-regression | softmax-regression, as in ModelSpec.
    public var model: String
    public var features: Int
    public var outputs: Int
    public var createdAt: Double
    public var accuracy: Double?
    public var tensors: [Tensor]
    /// The federation's preprocessing: a row x is scored as ((x − center) / scale) · weight + bias (missing
    /// values replaced by fill first); text labels are class k = labels[k]. Absent when it has none.
    public var preprocessing: Preprocessing?
    /// The target metric and this version's value of it in its latest counted evaluation round (nil if no
    /// counted round evaluated it), with that round's answered / asked agents.
    public var metric: String?
    public var score: Double?
    public var answered: Int?
    public var asked: Int?
    /// The best version at the time of the export (this one, or the one to compare it with).
    public var best: BestModelReport?
    /// An MLP's layers and activation (`mlp relu 2-16-16-2`); nil for the linear kinds.
    public var architecture: String?
    public init(version: Int64, model: String, features: Int, outputs: Int, createdAt: Double, accuracy: Double?, tensors: [Tensor],
                preprocessing: Preprocessing? = nil, metric: String? = nil, score: Double? = nil, answered: Int? = nil, asked: Int? = nil,
                best: BestModelReport? = nil, architecture: String? = nil) {
        self.architecture = architecture
        self.preprocessing = preprocessing
        self.metric = metric
        self.score = score
        self.answered = answered
        self.asked = asked
        self.best = best
        self.version = version
        self.model = model
        self.features = features
        self.outputs = outputs
        self.createdAt = createdAt
        self.accuracy = accuracy
        self.tensors = tensors
    }
}

public struct PinRequest: Codable, Sendable, Hashable {
    public var tier: Int
    public init(tier: Int) { self.tier = tier }
}

public struct EvictRequest: Codable, Sendable, Hashable {
    public var reason: String
    public init(reason: String) { self.reason = reason }
}

/// The answer to every action (retier, pin, unpin, evict, admit).
public struct ActionResult: Codable, Sendable, Hashable {
    public var action: String
    public var target: String
    public var message: String
    /// Tier moves the action caused.
    public var moves: [ActionMove]
    public init(action: String, target: String, message: String, moves: [ActionMove] = []) {
        self.action = action
        self.target = target
        self.message = message
        self.moves = moves
    }
}

public struct ActionMove: Codable, Sendable, Hashable {
    public var client: String
    public var from: Int?
    public var to: Int
    public init(client: String, from: Int?, to: Int) {
        self.client = client
        self.from = from
        self.to = to
    }
}

public struct AuditEntry: Codable, Sendable, Hashable {
    public var id: Int64
    public var at: Double
    /// The admin certificate's CN.
    public var actor: String
    public var action: String
    public var target: String
    public var detail: String
    /// ok, or the error code (not-found, conflict, ...).
    public var result: String
    public init(id: Int64, at: Double, actor: String, action: String, target: String, detail: String, result: String) {
        self.id = id
        self.at = at
        self.actor = actor
        self.action = action
        self.target = target
        self.detail = detail
        self.result = result
    }
}

public struct AuditReport: Codable, Sendable, Hashable {
    public var entries: [AuditEntry]
    public init(entries: [AuditEntry]) { self.entries = entries }
}

/// The body of every non-2xx answer.
public struct AdminErrorBody: Codable, Sendable, Hashable, Error {
    /// bad-request, not-authorized, not-found, conflict, not-ready, internal-error.
    public var error: String
    /// What went wrong and what to do next.
    public var message: String
    public init(error: String, message: String) {
        self.error = error
        self.message = message
    }
}
