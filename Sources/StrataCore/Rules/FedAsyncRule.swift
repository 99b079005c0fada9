/// FedAsync (Xie, Koyejo, Gupta 2019): every update is mixed into the model as it arrives,
/// x_t = (1 − α_t)·x_{t−1} + α_t·x_new with α_t = α·s(σ) recomputed from α each time.
/// x_new = x_τ + Δ needs the model the client started from: the rule keeps the last `maxStaleness + 1`
/// versions in memory (after a restart, the current model stands in for older ones).
public struct FedAsyncRule: AggregationRule, LaneSetRule {
    static let isTiered = false
    public let settings: RuleSettings
    var lanes: LaneSet
    /// version → parameters, for rebuilding x_new.
    var history: [Int64: [Float]] = [:]

    public init(settings: RuleSettings, parameters: [Float]) {
        self.settings = settings
        lanes = LaneSet(parameters: parameters, robustness: settings.robustness, optimizer: settings.serverOptimizer.makeOptimizer())
        history[0] = parameters
    }

    public var mode: AggregationMode { .fedasync }

    public mutating func restore(globalVersion: Int64, global: [Float], lanes restored: [LaneState]) {
        lanes.restore(globalVersion: globalVersion, global: global, lanes: Array(restored.prefix(1)))
        history = [lanes[0].version: lanes[0].parameters]
    }

    public mutating func schedule(idle: [ClientView], connected: [ClientView], now: Double) -> [Assignment] {
        lanes.setConnected(connected.count)
        return idle.map { Assignment(clientID: $0.id, lane: 0) }
    }

    var pending: [AggregationOutcome] = []

    public mutating func accept(_ update: RuleUpdate, now: Double) -> UpdateDisposition {
        var update = update
        update.lane = 0
        switch lanes.mix(update, base: history[update.baseVersion], alpha: settings.mixingAlpha,
                         staleness: settings.staleness, maxStaleness: settings.maxStaleness) {
        case .refused(let refusal):
            return refusal
        case .mixed(let outcome):
            let version = lanes[0].version
            history[version] = lanes[0].parameters
            history[version - Int64(settings.maxStaleness) - 1] = nil
            pending.append(outcome)
            let folded = outcome.updates[0]
            return .folded(staleness: folded.staleness, weight: folded.weight)
        }
    }

    public mutating func flush(now: Double) -> [AggregationOutcome] {
        aggregations(now: now)
    }

    public mutating func aggregations(now: Double) -> [AggregationOutcome] {
        defer { pending.removeAll() }
        return pending
    }

    /// Mixed updates not yet returned by `aggregations` are dropped with the rest (their versions are reused).
    public mutating func rollBack(to parameters: [Float], stepScale: Double, discardingFrom: Int64?) -> Rollback {
        let unreturned = pending
        pending.removeAll()
        let firstDropped = [discardingFrom, unreturned.first?.globalVersion].compactMap { $0 }.min()
        var rollback = lanes.rollBack(to: parameters, stepScale: stepScale, discardingFrom: firstDropped)
        rollback.discarded += unreturned.flatMap(\.updates)
        history = [lanes[0].version: lanes[0].parameters]
        return rollback
    }
}
