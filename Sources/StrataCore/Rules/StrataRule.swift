/// Strata's rule: asynchronous inside each latency tier, asynchronous across tiers.
///
/// - Inside tier m: a FedBuff-style buffer; every idle member trains at once on the tier's model; each
///   delta is folded with weight n_i · s(σ_i), σ counted in tier m's versions; after K_m = min(K, live
///   members of m) deltas (or the buffer timeout) the tier steps x_m ← x_m + η_g·(β·m + Δ̄).
///   With `tierMixing = .fedAsync`, each delta is mixed in at once instead (α·s(σ)).
/// - Across tiers: every tier step pushes x_m up; the global model becomes FedAT's
///   x = Σ_i (T_{M+1−i} / T)·x_i over the tiers with live members, and tier m continues from x.
/// - Before tiers are formed it is FedBuff over everyone. A tier whose agents all left is left out of the
///   combination (its weight would otherwise pin the global model to its last model); when it comes back
///   it restarts from the current global model.
public struct StrataRule: AggregationRule, LaneSetRule {
    static let isTiered = true
    public let settings: RuleSettings
    var lanes: LaneSet
    var tierCount = 0
    var liveMembers: [Int: Int] = [:]
    /// (lane, version) → parameters, only for FedAsync mixing inside tiers.
    var history: [LaneKey: [Float]] = [:]
    var pending: [AggregationOutcome] = []

    struct LaneKey: Hashable, Sendable {
        var lane: Int
        var version: Int64
    }

    public init(settings: RuleSettings, parameters: [Float]) {
        self.settings = settings
        lanes = LaneSet(parameters: parameters, robustness: settings.robustness, optimizer: settings.serverOptimizer.makeOptimizer())
        lanes.combination = settings.crossTier
        lanes.weighting = settings.crossTierWeighting
        if settings.tierMixing == .fedAsync { history[LaneKey(lane: 0, version: 0)] = parameters }
    }

    public var mode: AggregationMode { .strata }

    public mutating func restore(globalVersion: Int64, global: [Float], lanes restored: [LaneState]) {
        lanes.restore(globalVersion: globalVersion, global: global, lanes: restored)
        history.removeAll()
    }

    public mutating func tiersFormed(count: Int) {
        tierCount = count
        lanes.ensure(count: count)
    }

    public mutating func schedule(idle: [ClientView], connected: [ClientView], now: Double) -> [Assignment] {
        lanes.setConnected(connected.count)
        let laneOf = laneFunction(tierCount: tierCount)
        liveMembers = connected.reduce(into: [:]) { $0[laneOf($1), default: 0] += 1 }
        let wasActive = lanes.lanes.map(\.isActive)
        lanes.setActive(Set(liveMembers.keys))
        lanes.setMembers(liveMembers)
        // A tier that came back was rebased on the global model at the same version: that is now the model
        // its tasks start from.
        for lane in wasActive.indices where !wasActive[lane] && lanes[lane].isActive { remember(lane: lane) }
        return idle.filter { !lanes.isWaiting($0.id) }.map { Assignment(clientID: $0.id, lane: laneOf($0)) }
    }

    public mutating func accept(_ update: RuleUpdate, now: Double) -> UpdateDisposition {
        switch settings.tierMixing {
        case .buffer:
            return lanes.fold(update, staleness: settings.staleness, maxStaleness: settings.maxStaleness, now: now)
        case .fedAsync:
            let base = history[LaneKey(lane: update.lane, version: update.baseVersion)]
            switch lanes.mix(update, base: base, alpha: settings.mixingAlpha, staleness: settings.staleness,
                             maxStaleness: settings.maxStaleness) {
            case .refused(let refusal):
                return refusal
            case .mixed(let outcome):
                remember(lane: update.lane)
                pending.append(outcome)
                return .folded(staleness: outcome.updates[0].staleness, weight: outcome.updates[0].weight)
            }
        }
    }

    public mutating func flush(now: Double) -> [AggregationOutcome] {
        var outcomes = aggregations(now: now)
        outcomes += lanes.flushAll(settings: settings, now: now)
        return outcomes
    }

    /// Mixed updates not yet returned by `aggregations` (FedAsync mixing) are dropped with the rest.
    public mutating func rollBack(to parameters: [Float], stepScale: Double, discardingFrom: Int64?) -> Rollback {
        let unreturned = pending
        pending.removeAll()
        let firstDropped = [discardingFrom, unreturned.first?.globalVersion].compactMap { $0 }.min()
        var rollback = lanes.rollBack(to: parameters, stepScale: stepScale, discardingFrom: firstDropped)
        rollback.discarded += unreturned.flatMap(\.updates)
        history.removeAll()
        for lane in lanes.lanes.indices { remember(lane: lane) }
        return rollback
    }

    public mutating func aggregations(now: Double) -> [AggregationOutcome] {
        var outcomes = pending
        pending.removeAll()
        let k = settings.bufferSize
        let live = liveMembers
        for due in lanes.dueBuffers(size: { min(k, max(1, live[$0] ?? 1)) }, timeout: settings.bufferTimeout, now: now) {
            outcomes.append(lanes.stepBuffer(due.lane, settings: settings, trigger: due.trigger, now: now))
            remember(lane: due.lane)
        }
        return outcomes
    }

    /// Keeps the lane's current model for FedAsync mixing (bounded by the staleness limit).
    private mutating func remember(lane: Int) {
        guard settings.tierMixing == .fedAsync else { return }
        let version = lanes[lane].version
        history[LaneKey(lane: lane, version: version)] = lanes[lane].parameters
        history[LaneKey(lane: lane, version: version - Int64(settings.maxStaleness) - 1)] = nil
    }
}
