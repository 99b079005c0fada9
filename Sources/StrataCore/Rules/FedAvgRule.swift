/// FedAvg (McMahan et al., AISTATS 2017): synchronous rounds. A round starts when enough clients are idle,
/// selects C of them (0 = every connected client, and then waits until all are idle, as Flower's FedAvg
/// does), and closes when C updates are in, or at the deadline with what arrived. The step is
/// x ← x + η_g·Σ n_i Δ_i / Σ n_i, which with η_g = 1 is x ← Σ n_i x_i / Σ n_i.
public struct FedAvgRule: AggregationRule, LaneSetRule {
    static let isTiered = false
    public let settings: RuleSettings
    var lanes: LaneSet
    var round: SyncRound?
    var generator: SeededGenerator

    public init(settings: RuleSettings, parameters: [Float]) {
        self.settings = settings
        lanes = LaneSet(parameters: parameters, robustness: settings.robustness, optimizer: settings.serverOptimizer.makeOptimizer())
        generator = SeededGenerator(seed: settings.seed)
    }

    public var mode: AggregationMode { .fedavg }

    public mutating func restore(globalVersion: Int64, global: [Float], lanes restored: [LaneState]) {
        lanes.restore(globalVersion: globalVersion, global: global, lanes: Array(restored.prefix(1)))
        round = nil
    }

    public mutating func schedule(idle: [ClientView], connected: [ClientView], now: Double) -> [Assignment] {
        lanes.setConnected(connected.count)
        guard round == nil,
              let opened = SyncRound.open(lane: 0, baseVersion: lanes[0].version, idle: idle.map(\.id),
                                          connected: connected.count, settings: settings, now: now, generator: &generator)
        else { return [] }
        round = opened
        return opened.selected.sorted().map { Assignment(clientID: $0, lane: 0) }
    }

    public mutating func accept(_ update: RuleUpdate, now: Double) -> UpdateDisposition {
        var update = update
        update.lane = 0
        return lanes.fold(update, into: &round, now: now, closed: "the round of version \(update.baseVersion) is closed")
    }

    public mutating func flush(now: Double) -> [AggregationOutcome] {
        defer { round = nil }
        guard let open = round, open.received > 0 else { return [] }
        return [lanes.stepAndPush(0, trigger: "drain")]
    }

    public mutating func aggregations(now: Double) -> [AggregationOutcome] {
        guard let open = round, let why = open.closing(now: now) else { return [] }
        round = nil
        if why == "empty" { return [] }
        return [lanes.stepAndPush(0, trigger: why)]
    }

    public mutating func clientLeft(_ clientID: String) {
        round?.awaiting.remove(clientID)
    }

    public mutating func rollBack(to parameters: [Float], stepScale: Double, discardingFrom: Int64?) -> Rollback {
        round = nil
        return lanes.rollBack(to: parameters, stepScale: stepScale, discardingFrom: discardingFrom)
    }
}

extension SyncRound {
    /// Opens a round over `idle` if enough clients are ready: with C = 0, only when every connected client
    /// is idle; otherwise when min(C, connected) are.
    /// Whether enough of the connected clients are idle for a round.
    static func canOpen(idle: Int, connected: Int, settings: RuleSettings) -> Bool {
        guard idle > 0 else { return false }
        return settings.clientsPerRound == 0 ? idle >= connected : idle >= min(settings.clientsPerRound, connected)
    }

    static func open(lane: Int, baseVersion: Int64, idle: [String], connected: Int, settings: RuleSettings,
                     now: Double, generator: inout SeededGenerator) -> SyncRound? {
        guard canOpen(idle: idle.count, connected: connected, settings: settings) else { return nil }
        let size = roundSize(available: idle.count, settings: settings)
        let chosen = sample(idle, count: size.select, using: &generator)
        return SyncRound(lane: lane, baseVersion: baseVersion, selected: chosen, needed: size.needed,
                         deadline: settings.roundDeadline.map { now + $0 })
    }

    /// An update belongs to this round if the round is still open (fewer than C updates, deadline not
    /// passed), its client was selected, has not delivered yet, and started from the round's model.
    func accepts(_ update: RuleUpdate, now: Double) -> Bool {
        closing(now: now) == nil
            && awaiting.contains(update.clientID) && update.baseVersion == baseVersion && update.lane == lane
    }
}
