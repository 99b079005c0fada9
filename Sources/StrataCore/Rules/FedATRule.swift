/// FedAT (Chai et al., SC 2021): synchronous rounds inside each tier, asynchronous across tiers. Each tier
/// runs FedAvg rounds on its own model; when a round finishes, the tier's model goes up, the global model
/// becomes x = Σ_i (T_{M+1−i} / T)·x_i, and that tier continues from the new global model. Tiers never wait
/// for each other. Before tiers are formed, it is FedAvg over everyone.
public struct FedATRule: AggregationRule, LaneSetRule {
    static let isTiered = true
    public let settings: RuleSettings
    var lanes: LaneSet
    var rounds: [Int: SyncRound] = [:]
    var tierCount = 0
    var generator: SeededGenerator

    public init(settings: RuleSettings, parameters: [Float]) {
        self.settings = settings
        lanes = LaneSet(parameters: parameters, robustness: settings.robustness, optimizer: settings.serverOptimizer.makeOptimizer())
        generator = SeededGenerator(seed: settings.seed)
    }

    public var mode: AggregationMode { .fedat }

    public mutating func restore(globalVersion: Int64, global: [Float], lanes restored: [LaneState]) {
        lanes.restore(globalVersion: globalVersion, global: global, lanes: restored)
        rounds.removeAll()
    }

    public mutating func tiersFormed(count: Int) {
        tierCount = count
        lanes.ensure(count: count)
    }

    public mutating func schedule(idle: [ClientView], connected: [ClientView], now: Double) -> [Assignment] {
        lanes.setConnected(connected.count)
        let laneOf = laneFunction(tierCount: tierCount)
        let connectedByLane = Dictionary(grouping: connected, by: laneOf)
        lanes.setActive(Set(connectedByLane.keys))
        let idleByLane = Dictionary(grouping: idle, by: laneOf)
        var assignments: [Assignment] = []
        for (lane, members) in idleByLane.sorted(by: { $0.key < $1.key }) where rounds[lane] == nil {
            guard let round = SyncRound.open(lane: lane, baseVersion: lanes[lane].version, idle: members.map(\.id),
                                             connected: connectedByLane[lane]?.count ?? 0, settings: settings,
                                             now: now, generator: &generator) else { continue }
            rounds[lane] = round
            assignments += round.selected.sorted().map { Assignment(clientID: $0, lane: lane) }
        }
        return assignments
    }

    public mutating func accept(_ update: RuleUpdate, now: Double) -> UpdateDisposition {
        lanes.fold(update, into: &rounds[update.lane], now: now,
                   closed: "tier \(update.lane)'s round of version \(update.baseVersion) is closed")
    }

    public mutating func flush(now: Double) -> [AggregationOutcome] {
        defer { rounds.removeAll() }
        return rounds.sorted(by: { $0.key < $1.key }).filter { $0.value.received > 0 }.map {
            lanes.stepAndPush($0.key, trigger: "drain")
        }
    }

    public mutating func aggregations(now: Double) -> [AggregationOutcome] {
        var outcomes: [AggregationOutcome] = []
        for (lane, round) in rounds.sorted(by: { $0.key < $1.key }) {
            guard let why = round.closing(now: now) else { continue }
            rounds[lane] = nil
            if why != "empty" {
                outcomes.append(lanes.stepAndPush(lane, trigger: why))
            }
        }
        return outcomes
    }

    public mutating func clientLeft(_ clientID: String) {
        for lane in rounds.keys { rounds[lane]?.awaiting.remove(clientID) }
    }

    public mutating func rollBack(to parameters: [Float], stepScale: Double, discardingFrom: Int64?) -> Rollback {
        rounds.removeAll()
        return lanes.rollBack(to: parameters, stepScale: stepScale, discardingFrom: discardingFrom)
    }
}

/// The lane of a client: its tier once tiers exist (lane 0 before).
func laneFunction(tierCount: Int) -> (ClientView) -> Int {
    { client in
        guard tierCount > 0 else { return 0 }
        return min(max(0, client.tier ?? (tierCount - 1)), tierCount - 1)
    }
}
