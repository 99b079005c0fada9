import StrataCore
import StrataStore

/// Latency profiling and tiers: every answered training task is a latency sample; tiers are formed once
/// the connected clients are profiled, new clients are placed after their profiling tasks, and periodic
/// re-tiering moves clients only after consistent evidence (hysteresis in `TierAssigner`).
extension Coordinator {
    func recordLatency(clientID: String, seconds: Double) {
        guard seconds.isFinite, seconds >= 0 else { return }
        var profile = profiles[clientID] ?? LatencyProfile()
        profile.record(seconds, smoothing: configuration.tiering.policy.smoothing)
        profiles[clientID] = profile
    }

    var profiledLatencies: [String: Double] {
        let needed = configuration.tiering.policy.profilingTasks
        // Evicted clients keep their history but take no part in tiering until re-admitted.
        return profiles.reduce(into: [:]) { result, entry in
            if evicted[entry.key] == nil, entry.value.sampleCount >= needed, let s = entry.value.smoothedSeconds { result[entry.key] = s }
        }
    }

    /// Forms tiers, places newly profiled clients, and re-tiers on its period. Persists every move.
    func manageTiers() async {
        guard configuration.aggregation.mode.usesTiers, stopReason == nil else { return }
        let profiled = profiledLatencies
        var moves: [TierMove] = []
        if !tiers.isFormed {
            let connected = Set(sessions.keys)
            let connectedProfiled = profiled.filter { connected.contains($0.key) }
            let waitedLongEnough = firstSessionAt.map { ContinuousClock.now - $0 >= configuration.tiering.formationTimeout } ?? false
            // Every agent profiled, or the unprofiled ones so late that they can only be the slowest tier.
            let now = Self.now()
            var unprofiled: [String: Double?] = [:]
            for clientID in connected where profiled[clientID] == nil {
                unprofiled[clientID] = outstandingTraining[clientID].flatMap { tasks[$0] }.map { now - $0.dispatchedAt }
            }
            let minimum = configuration.tiering.policy.minTierSize
            let latencies: [String: Double]
            if let early = TierFormation.latencies(profiled: connectedProfiled, unprofiled: unprofiled,
                                                   stragglerFactor: configuration.tiering.stragglerFactor, minimumProfiled: minimum) {
                latencies = early
                if !unprofiled.isEmpty {
                    logger.info("tiers form before the slowest agents are profiled: their tasks have been out long enough",
                                metadata: ["stragglers": "\(unprofiled.keys.sorted())"])
                }
            } else if waitedLongEnough, connectedProfiled.count >= max(1, minimum) {
                latencies = connectedProfiled
            } else {
                return
            }
            do {
                moves = try tiers.form(latencies: latencies)
            } catch {
                logger.error("cannot form tiers", metadata: ["error": "\(error)"])
                return
            }
            rule.tiersFormed(count: tiers.tierCount)
            lastRetier = .now
            logger.notice("tiers formed", metadata: ["tiers": "\(tiers.tierCount)", "clients": "\(latencies.count)",
                                                      "sizes": "\((0..<tiers.tierCount).map { tiers.members(of: $0).count })"])
        } else {
            for (clientID, latency) in profiled.sorted(by: { $0.key < $1.key }) where tiers.tier(of: clientID) == nil {
                if let move = tiers.place(clientID, latency: latency, latencies: profiled) { moves.append(move) }
            }
            if ContinuousClock.now - lastRetier >= configuration.tiering.retierInterval {
                lastRetier = .now
                moves += tiers.rebalance(latencies: profiled)
            }
        }
        do {
            try await persistTierMoves(moves)
        } catch {
            fail("cannot record tier moves: \(error)")
        }
    }

    /// Logs tier moves, records them with the tier count in one transaction, then announces them.
    func persistTierMoves(_ moves: [TierMove]) async throws {
        guard !moves.isEmpty else { return }
        for move in moves {
            logger.info("tier move", metadata: ["client": "\(move.clientID)", "from": "\(move.from.map(String.init) ?? "-")", "to": "\(move.to)",
                                                 "reason": "\(move.reason.rawValue)", "latency": "\(move.latencySeconds.map { String(format: "%.3f", $0) } ?? "-")"])
        }
        let now = Self.now()
        try await store.recordTierMoves(moves.map { TierMoveRecord(clientID: $0.clientID, fromTier: $0.from, toTier: $0.to, reason: $0.reason.rawValue,
                                                                  latencySeconds: $0.latencySeconds, at: now) }, tierCount: tiers.tierCount)
        onEvent(.tiersChanged(moves))
    }

    /// Pins a client to a tier (operator action); the move, if any, is persisted with reason "pinned".
    public func pin(clientID: String, tier: Int) async throws -> TierMove? {
        let move = try tiers.pin(clientID, to: tier)
        try await store.recordPin(clientID: clientID, tier: tier)
        if let move { try await persistTierMoves([move]) }
        return move
    }
}
