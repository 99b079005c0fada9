/// FedBuff (Nguyen et al., AISTATS 2022): one flat buffer, no tiers. Every idle client trains at once; each
/// delta is folded with weight n_i · s(σ_i); after K deltas the model steps x ← x + η_g·(β·m + Δ̄).
/// With one update per agent per buffer (the default robustness), K is capped at the connected agents.
public struct FedBuffRule: AggregationRule, LaneSetRule {
    static let isTiered = false
    public let settings: RuleSettings
    var lanes: LaneSet
    var connectedCount = 0

    public init(settings: RuleSettings, parameters: [Float]) {
        self.settings = settings
        lanes = LaneSet(parameters: parameters, robustness: settings.robustness, optimizer: settings.serverOptimizer.makeOptimizer())
    }

    public var mode: AggregationMode { .fedbuff }

    public mutating func restore(globalVersion: Int64, global: [Float], lanes restored: [LaneState]) {
        lanes.restore(globalVersion: globalVersion, global: global, lanes: Array(restored.prefix(1)))
    }

    public mutating func schedule(idle: [ClientView], connected: [ClientView], now: Double) -> [Assignment] {
        lanes.setConnected(connected.count)
        connectedCount = connected.count
        return idle.filter { !lanes.isWaiting($0.id) }.map { Assignment(clientID: $0.id, lane: 0) }
    }

    public mutating func accept(_ update: RuleUpdate, now: Double) -> UpdateDisposition {
        var update = update
        update.lane = 0
        return lanes.fold(update, staleness: settings.staleness, maxStaleness: settings.maxStaleness, now: now)
    }

    public mutating func flush(now: Double) -> [AggregationOutcome] {
        lanes.flushAll(settings: settings, now: now)
    }

    public mutating func aggregations(now: Double) -> [AggregationOutcome] {
        let k = settings.robustness.onePerBuffer && connectedCount > 0 ? min(settings.bufferSize, connectedCount) : settings.bufferSize
        return lanes.dueBuffers(size: { _ in k }, timeout: settings.bufferTimeout, now: now).map {
            lanes.stepBuffer($0.lane, settings: settings, trigger: $0.trigger, now: now)
        }
    }

    public mutating func rollBack(to parameters: [Float], stepScale: Double, discardingFrom: Int64?) -> Rollback {
        lanes.rollBack(to: parameters, stepScale: stepScale, discardingFrom: discardingFrom)
    }
}
