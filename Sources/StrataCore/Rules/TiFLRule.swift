/// TiFL (Chai et al., HPDC 2020): synchronous rounds on one global model, each round inside ONE tier.
/// A round picks a tier (static: fixed probabilities; adaptive: credits and accuracies), then C clients of
/// that tier uniformly (0 = all of its live members), and waits for them.
///
/// Adaptive selection: all tiers start at 1/m with ceil(R/m) credits; each pick spends one credit; every I
/// rounds, if the accuracy of the tier just trained did not improve since the last check, tiers with
/// credits are sorted by accuracy (lowest first) and the one at index i gets (n − i) / (n(n+1)/2).
/// When every credit is spent, selection continues uniformly.
public struct TiFLRule: AggregationRule, LaneSetRule {
    static let isTiered = false
    public let settings: RuleSettings
    var lanes: LaneSet
    var round: SyncRound?
    var roundTier: Int?
    var tierCount = 0
    var generator: SeededGenerator
    public private(set) var probabilities: [Double] = []
    public private(set) var credits: [Int] = []
    var roundsCompleted = 0
    var tierAccuracies: [Int: Double] = [:]
    var accuracyAtLastCheck: [Int: Double] = [:]
    var lastTier: Int?

    public init(settings: RuleSettings, parameters: [Float]) {
        self.settings = settings
        lanes = LaneSet(parameters: parameters, robustness: settings.robustness, optimizer: settings.serverOptimizer.makeOptimizer())
        generator = SeededGenerator(seed: settings.seed)
    }

    public var mode: AggregationMode { .tifl }

    public mutating func restore(globalVersion: Int64, global: [Float], lanes restored: [LaneState]) {
        lanes.restore(globalVersion: globalVersion, global: global, lanes: Array(restored.prefix(1)))
        round = nil
    }

    public mutating func tiersFormed(count: Int) {
        tierCount = count
        switch settings.tierSelection {
        case .adaptive:
            probabilities = [Double](repeating: 1 / Double(count), count: count)
        case .fixed(let given):
            var p = (0..<count).map { $0 < given.count ? given[$0] : 0 }
            let sum = p.reduce(0, +)
            p = sum > 0 ? p.map { $0 / sum } : [Double](repeating: 1 / Double(count), count: count)
            probabilities = p
        }
        let perTier = (settings.plannedRounds + count - 1) / count
        credits = [Int](repeating: perTier, count: count)
    }

    public mutating func schedule(idle: [ClientView], connected: [ClientView], now: Double) -> [Assignment] {
        lanes.setConnected(connected.count)
        guard round == nil else { return [] }
        let laneOf = laneFunction(tierCount: tierCount)
        let idleByTier = Dictionary(grouping: idle, by: laneOf)
        let connectedByTier = Dictionary(grouping: connected, by: laneOf)
        // Tiers that could start a round now.
        let ready = idleByTier.keys.filter {
            SyncRound.canOpen(idle: idleByTier[$0]?.count ?? 0, connected: connectedByTier[$0]?.count ?? 0, settings: settings)
        }
        guard !ready.isEmpty else { return [] }
        // A tier that has live members but is busy is not skipped over for ever: a round waits for the
        // chosen tier, so choose among tiers that can start now.
        let tier = tierCount == 0 ? 0 : chooseTier(among: ready.sorted())
        guard let members = idleByTier[tier],
              let opened = SyncRound.open(lane: 0, baseVersion: lanes[0].version, idle: members.map(\.id),
                                          connected: connectedByTier[tier]?.count ?? 0, settings: settings, now: now,
                                          generator: &generator) else { return [] }
        if tierCount > 0, credits.indices.contains(tier), credits[tier] > 0 { credits[tier] -= 1 }
        round = opened
        roundTier = tier
        return opened.selected.sorted().map { Assignment(clientID: $0, lane: 0) }
    }

    /// Draws a tier from `candidates` by the current probabilities (uniform if all weights are zero).
    /// Adaptive only: tiers without credits are excluded while any candidate has credits, and once every
    /// credit is spent the draw is uniform. Static selection ignores credits.
    mutating func chooseTier(among candidates: [Int]) -> Int {
        let adaptive = settings.tierSelection == .adaptive
        let withCredits = adaptive ? candidates.filter { credits.indices.contains($0) && credits[$0] > 0 } : candidates
        let pool = withCredits.isEmpty ? candidates : withCredits
        var weights = pool.map { probabilities.indices.contains($0) ? probabilities[$0] : 0 }
        let creditsLeft = credits.contains { $0 > 0 }
        if weights.reduce(0, +) <= 0 || (adaptive && !creditsLeft) { weights = pool.map { _ in 1 } }
        let total = weights.reduce(0, +)
        var u = generator.nextUniform() * total
        for (tier, w) in zip(pool, weights) {
            if u < w { return tier }
            u -= w
        }
        return pool[pool.count - 1]
    }

    public mutating func accept(_ update: RuleUpdate, now: Double) -> UpdateDisposition {
        var update = update
        update.lane = 0
        return lanes.fold(update, into: &round, now: now, closed: "the round of version \(update.baseVersion) is closed")
    }

    public mutating func flush(now: Double) -> [AggregationOutcome] {
        defer { round = nil; roundTier = nil }
        guard let open = round, open.received > 0 else { return [] }
        return [lanes.stepAndPush(0, trigger: "drain")]
    }

    public mutating func aggregations(now: Double) -> [AggregationOutcome] {
        guard let open = round, let why = open.closing(now: now) else { return [] }
        round = nil
        let tier = roundTier
        roundTier = nil
        if why == "empty" { return [] }
        roundsCompleted += 1
        lastTier = tier
        if case .adaptive = settings.tierSelection, tierCount > 0, roundsCompleted % settings.adaptiveInterval == 0 {
            adapt()
        }
        return [lanes.stepAndPush(0, trigger: why)]
    }

    /// TiFL's ChangeProbs, run every I rounds when the last tier's accuracy did not improve.
    mutating func adapt() {
        guard let tier = lastTier, let now = tierAccuracies[tier] else { return }
        defer { accuracyAtLastCheck = tierAccuracies }
        if let before = accuracyAtLastCheck[tier], now > before { return }
        let eligible = (0..<tierCount).filter { credits[$0] > 0 }
        guard !eligible.isEmpty else { return }
        probabilities = Self.adaptiveProbabilities(accuracies: tierAccuracies, eligible: eligible, tierCount: tierCount)
    }

    /// Sorted by accuracy, lowest first; index i gets (n − i) / (n(n+1)/2); tiers not eligible get 0.
    /// A tier with no accuracy yet counts as the least accurate.
    public static func adaptiveProbabilities(accuracies: [Int: Double], eligible: [Int], tierCount: Int) -> [Double] {
        let order = eligible.sorted { (accuracies[$0] ?? -1, $0) < (accuracies[$1] ?? -1, $1) }
        let n = Double(order.count)
        var p = [Double](repeating: 0, count: tierCount)
        for (i, tier) in order.enumerated() { p[tier] = (n - Double(i)) / (n * (n + 1) / 2) }
        return p
    }

    public mutating func clientLeft(_ clientID: String) {
        round?.awaiting.remove(clientID)
    }

    public mutating func rollBack(to parameters: [Float], stepScale: Double, discardingFrom: Int64?) -> Rollback {
        round = nil
        roundTier = nil
        return lanes.rollBack(to: parameters, stepScale: stepScale, discardingFrom: discardingFrom)
    }

    public mutating func observeEvaluation(tierAccuracies: [Int: Double]) {
        self.tierAccuracies.merge(tierAccuracies) { $1 }
    }
}
