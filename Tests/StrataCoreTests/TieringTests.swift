import Testing
@testable import StrataCore

/// 10 clients each near 0.05 s, 0.55 s and 2.05 s, with ±0.004 s of noise.
private func threeGroups() -> [String: Double] {
    var l: [String: Double] = [:]
    for i in 0..<10 {
        let noise = Double(i % 5) * 0.002 - 0.004
        l["fast-\(i)"] = 0.05 + noise
        l["mid-\(i)"] = 0.55 + noise
        l["slow-\(i)"] = 2.05 + noise
    }
    return l
}

private func ids(_ prefix: String) -> Set<String> { Set((0..<10).map { "\(prefix)-\($0)" }) }

@Suite struct LatencyProfileTests {
    @Test func ewmaHandComputed() {
        var p = LatencyProfile()
        #expect(p.smoothedSeconds == nil && p.sampleCount == 0)
        let accepted = p.record(1, smoothing: 0.5)
        #expect(accepted)
        #expect(p.smoothedSeconds == 1)       // first sample sets s
        p.record(3, smoothing: 0.5)
        #expect(p.smoothedSeconds == 2)       // 0.5·3 + 0.5·1
        p.record(0, smoothing: 0.25)
        #expect(p.smoothedSeconds == 1.5)     // 0.25·0 + 0.75·2
        p.record(5.5, smoothing: 1)
        #expect(p.smoothedSeconds == 5.5)     // α = 1 keeps only the last sample
        #expect(p.lastSeconds == 5.5)
        #expect(p.sampleCount == 4)
    }

    @Test func ignoresNonFiniteAndNegativeSamples() {
        var p = LatencyProfile(smoothedSeconds: 2, lastSeconds: 2, sampleCount: 5)
        for bad in [Double.nan, .infinity, -.infinity, -0.1] {
            let accepted = p.record(bad, smoothing: 0.3)
            #expect(!accepted)
        }
        #expect(p == LatencyProfile(smoothedSeconds: 2, lastSeconds: 2, sampleCount: 5))
    }
}

@Suite struct TierPlannerTests {
    @Test func threeObviousGroupsAutomatic() {
        let l = threeGroups()
        let policy = TieringPolicy()
        #expect(TierPlanner.automaticTierCount(l, policy: policy) == 3)
        let tiers = TierPlanner.partition(l, tierCount: nil, policy: policy)
        #expect(tiers.map(Set.init) == [ids("fast"), ids("mid"), ids("slow")])
        // Fastest first inside a tier too.
        #expect(tiers[0].map { l[$0]! } == tiers[0].map { l[$0]! }.sorted())
    }

    @Test func fixedTierCountCutsAtTheLargestGap() {
        // fast→mid is a ×10 gap, mid→slow only ×3.7.
        let tiers = TierPlanner.partition(threeGroups(), tierCount: 2, policy: TieringPolicy())
        #expect(tiers.map(Set.init) == [ids("fast"), ids("mid").union(ids("slow"))])
    }

    @Test func minTierSizeSkipsACutThatIsolatesAnOutlier() {
        let l = ["a": 1.0, "b": 1.1, "c": 1.2, "d": 1.3, "outlier": 10]
        #expect(TierPlanner.partition(l, tierCount: 2, policy: TieringPolicy(minTierSize: 1))
                == [["a", "b", "c", "d"], ["outlier"]])
        // The outlier alone would be a tier of 1; the next largest allowed gap is b|c.
        #expect(TierPlanner.partition(l, tierCount: 2, policy: TieringPolicy(minTierSize: 2))
                == [["a", "b"], ["c", "d", "outlier"]])
        #expect(TierPlanner.automaticTierCount(l, policy: TieringPolicy(minTierSize: 1)) == 2)
        #expect(TierPlanner.automaticTierCount(l, policy: TieringPolicy(minTierSize: 2)) == 1)
    }

    @Test func tierCountIsLimitedByMinTierSize() {
        let l = ["a": 1.0, "b": 2.0, "c": 4.0, "d": 8.0, "e": 16.0]
        let tiers = TierPlanner.partition(l, tierCount: 10, policy: TieringPolicy(minTierSize: 2))
        #expect(tiers.count == 2)
        #expect(tiers.allSatisfy { $0.count >= 2 })
        #expect(TierPlanner.partition(l, tierCount: 10, policy: TieringPolicy()).count == 5)
    }

    @Test func equalCountFallbackWhenGapsCannotSatisfyMinSizes() {
        // After the big cut c|d both halves hold 3, so no further cut keeps 2 per tier: quantiles instead.
        let l = ["a": 1.0, "b": 1.01, "c": 1.02, "d": 10, "e": 10.1, "f": 10.2]
        #expect(TierPlanner.partition(l, tierCount: 3, policy: TieringPolicy(minTierSize: 2))
                == [["a", "b"], ["c", "d"], ["e", "f"]])
        // No positive gap at all.
        let flat = Dictionary(uniqueKeysWithValues: (0..<7).map { ("c\($0)", 0.5) })
        #expect(TierPlanner.partition(flat, tierCount: 3, policy: TieringPolicy()).map(\.count) == [2, 2, 3])
    }

    @Test func tiesAreOrderedByClientID() {
        var forward: [String: Double] = [:], backward: [String: Double] = [:]
        let names = ["c", "a", "d", "b"]
        for n in names { forward[n] = 1.0 }
        for n in names.reversed() { backward[n] = 1.0 }
        forward["e"] = 5
        backward["e"] = 5
        let expected = [["a", "b", "c", "d"], ["e"]]
        #expect(TierPlanner.partition(forward, tierCount: nil, policy: TieringPolicy()) == expected)
        #expect(TierPlanner.partition(backward, tierCount: nil, policy: TieringPolicy()) == expected)
        #expect(TierPlanner.partition(backward, tierCount: 2, policy: TieringPolicy()) == expected)
    }

    @Test func emptyAndSingleClient() {
        #expect(TierPlanner.partition([:], tierCount: nil, policy: TieringPolicy()) == [])
        #expect(TierPlanner.partition([:], tierCount: 3, policy: TieringPolicy()) == [])
        #expect(TierPlanner.automaticTierCount([:], policy: TieringPolicy()) == 0)
        #expect(TierPlanner.partition(["a": 0.2], tierCount: 3, policy: TieringPolicy()) == [["a"]])
        #expect(TierPlanner.partition(["a": 0.2], tierCount: nil, policy: TieringPolicy()) == [["a"]])
    }

    @Test func automaticCountIsCappedByMaxTiers() {
        let l = threeGroups()
        #expect(TierPlanner.automaticTierCount(l, policy: TieringPolicy(maxTiers: 2)) == 2)
        #expect(TierPlanner.partition(l, tierCount: nil, policy: TieringPolicy(maxTiers: 2)).map(Set.init)
                == [ids("fast"), ids("mid").union(ids("slow"))])
        #expect(TierPlanner.automaticTierCount(l, policy: TieringPolicy(maxTiers: 1)) == 1)
    }

    @Test func uniformLatenciesFormOneTier() {
        // 1.0, 1.1, ..., 3.0: neighbours differ by at most ×1.1.
        let l = Dictionary(uniqueKeysWithValues: (0...20).map { ("c\($0)", 1 + Double($0) / 10) })
        #expect(TierPlanner.automaticTierCount(l, policy: TieringPolicy()) == 1)
        #expect(TierPlanner.partition(l, tierCount: nil, policy: TieringPolicy()).count == 1)
    }
}

@Suite struct TierAssignerTests {
    private func formed(_ policy: TieringPolicy = TieringPolicy(), pins: [String: Int] = [:]) throws -> TierAssigner {
        var a = TierAssigner(policy: policy, pins: pins)
        _ = try a.form(latencies: threeGroups())
        return a
    }

    @Test func formAppliesPinsAndClampsThem() throws {
        var a = TierAssigner(policy: TieringPolicy(), pins: ["fast-0": 2, "mid-0": 9])
        #expect(!a.isFormed)
        let moves = try a.form(latencies: threeGroups())
        #expect(a.isFormed && a.tierCount == 3)
        #expect(moves.count == 30)
        #expect(a.tier(of: "fast-0") == 2)
        #expect(a.tier(of: "mid-0") == 2)        // pin 9 clamped to the slowest tier
        #expect(a.pins["mid-0"] == 2)
        #expect(a.tier(of: "fast-1") == 0 && a.tier(of: "mid-1") == 1 && a.tier(of: "slow-1") == 2)
        #expect(moves.first { $0.clientID == "fast-0" } == TierMove(clientID: "fast-0", from: nil, to: 2, reason: .pinned, latencySeconds: 0.046))
        #expect(moves.filter { $0.reason == .pinned }.count == 2)
        #expect(moves.filter { $0.reason == .formation }.count == 28)
        #expect(a.members(of: 0) == ids("fast").subtracting(["fast-0"]).sorted())
    }

    @Test func formRejectsEmptyBadOrRepeatedFormation() throws {
        var a = TierAssigner(policy: TieringPolicy())
        #expect(throws: StrataCoreError.self) { try a.form(latencies: [:]) }
        #expect(throws: StrataCoreError.self) { try a.form(latencies: ["a": .nan]) }
        _ = try a.form(latencies: ["a": 1])
        #expect(throws: StrataCoreError.self) { try a.form(latencies: ["b": 1]) }
    }

    @Test func placeChoosesTheNearestTier() throws {
        var a = try formed(pins: ["pinned": 0])
        let l = threeGroups()
        #expect(a.place("n1", latency: 0.5, latencies: l)?.to == 1)
        #expect(a.place("n2", latency: 0.06, latencies: l) == TierMove(clientID: "n2", from: nil, to: 0, reason: .profiled, latencySeconds: 0.06))
        #expect(a.place("n3", latency: 30, latencies: l)?.to == 2)
        #expect(a.place("pinned", latency: 3, latencies: l) == TierMove(clientID: "pinned", from: nil, to: 0, reason: .pinned, latencySeconds: 3))
        #expect(a.place("n1", latency: 2, latencies: l) == nil)   // already has a tier
        #expect(a.tier(of: "n1") == 1)
        var unformed = TierAssigner(policy: TieringPolicy())
        #expect(unformed.place("x", latency: 1, latencies: [:]) == nil)
    }

    @Test func placeTiesGoSlowerAndEmptyTiersAreSkipped() {
        var a = TierAssigner(policy: TieringPolicy(), tierCount: 3, assignment: ["f": 0, "s": 2], pins: [:])
        let l = ["f": 0.5, "s": 2.0]
        // 1 s is exactly as far from 0.5 s as from 2 s in log-latency; tier 1 has no members.
        #expect(a.place("x", latency: 1.0, latencies: l)?.to == 2)
        #expect(a.place("y", latency: 0.9, latencies: l)?.to == 0)
    }

    @Test func driftNeedsHysteresisRoundsInARow() throws {
        var a = try formed()
        var l = threeGroups()
        l["fast-3"] = 2.0
        #expect(a.rebalance(latencies: l) == [])
        #expect(a.rebalance(latencies: l) == [])
        #expect(a.tier(of: "fast-3") == 0)
        #expect(a.rebalance(latencies: l) == [TierMove(clientID: "fast-3", from: 0, to: 2, reason: .drift, latencySeconds: 2.0)])
        #expect(a.tier(of: "fast-3") == 2)
        #expect(a.rebalance(latencies: l) == [])
    }

    @Test func noisyClientsNeverMove() throws {
        var a = try formed()
        var l = threeGroups()
        for round in 0..<12 {
            // fast-4 flips between its own tier and the slow one; fast-5 between the mid and slow targets.
            l["fast-4"] = round % 2 == 0 ? 2.0 : 0.05
            l["fast-5"] = round % 2 == 0 ? 2.0 : 0.55
            #expect(a.rebalance(latencies: l) == [])
        }
        #expect(a.tier(of: "fast-4") == 0 && a.tier(of: "fast-5") == 0)
    }

    @Test func moveBudgetPerCallLargestDistanceFirst() throws {
        var a = try formed(TieringPolicy(hysteresisRounds: 3, maxMovesPerRebalance: 2))
        var l = threeGroups()
        l["fast-1"] = 3.0
        l["fast-2"] = 2.0
        l["fast-3"] = 1.5
        #expect(a.rebalance(latencies: l) == [])
        #expect(a.rebalance(latencies: l) == [])
        #expect(a.rebalance(latencies: l).map(\.clientID) == ["fast-1", "fast-2"])
        #expect(a.tier(of: "fast-3") == 0)
        #expect(a.rebalance(latencies: l) == [TierMove(clientID: "fast-3", from: 0, to: 2, reason: .drift, latencySeconds: 1.5)])
    }

    @Test func neverEmptiesATierBelowMinTierSize() throws {
        var a = TierAssigner(policy: TieringPolicy(tierCount: 2, minTierSize: 2))
        var l = ["a": 0.05, "b": 0.06, "c": 2.0, "d": 2.1, "e": 2.2]
        _ = try a.form(latencies: l)
        #expect(a.members(of: 0) == ["a", "b"])
        // b drifts slow; the partition now wants [a, c] [d, e, b] (a alone would be too small).
        l["b"] = 2.3
        #expect(a.rebalance(latencies: l) == [])
        #expect(a.rebalance(latencies: l) == [])
        // b has its evidence but tier 0 holds only 2: c moves in first.
        #expect(a.rebalance(latencies: l).map(\.clientID) == ["c"])
        #expect(a.members(of: 0) == ["a", "b", "c"])
        #expect(a.rebalance(latencies: l) == [TierMove(clientID: "b", from: 0, to: 1, reason: .drift, latencySeconds: 2.3)])
        #expect(a.members(of: 0) == ["a", "c"] && a.members(of: 1) == ["b", "d", "e"])
    }

    @Test func pinnedClientNeverDriftsUntilUnpinned() throws {
        var a = try formed()
        #expect(try a.pin("fast-3", to: 0) == nil)   // already there
        var l = threeGroups()
        l["fast-3"] = 2.0
        for _ in 0..<6 { #expect(a.rebalance(latencies: l) == []) }
        #expect(a.tier(of: "fast-3") == 0)
        a.unpin("fast-3")
        #expect(a.pins.isEmpty)
        #expect(a.rebalance(latencies: l) == [])
        #expect(a.rebalance(latencies: l) == [])
        #expect(a.rebalance(latencies: l).map(\.to) == [2])
    }

    @Test func pinMovesNowOrWaitsForFormation() throws {
        var early = TierAssigner(policy: TieringPolicy())
        #expect(try early.pin("fast-0", to: 7) == nil)
        #expect(early.pins["fast-0"] == 7)
        #expect(throws: StrataCoreError.self) { try early.pin("x", to: -1) }

        var a = try formed()
        #expect(try a.pin("fast-5", to: 1) == TierMove(clientID: "fast-5", from: 0, to: 1, reason: .pinned))
        #expect(a.tier(of: "fast-5") == 1)
        #expect(try a.pin("fast-5", to: 99) == TierMove(clientID: "fast-5", from: 1, to: 2, reason: .pinned))
        #expect(a.pins["fast-5"] == 2)
        #expect(try a.pin("unknown", to: 1) == nil)   // no tier yet: place() will honour it
        a.unpin("fast-5")
        #expect(a.pins["fast-5"] == nil && a.tier(of: "fast-5") == 2)
    }

    @Test func removeForgetsTheClient() throws {
        var a = try formed(pins: ["mid-2": 0])
        a.remove("mid-2")
        #expect(a.tier(of: "mid-2") == nil && a.pins["mid-2"] == nil)
        #expect(!a.members(of: 0).contains("mid-2"))
        #expect(a.members(of: 1).count == 9)
        #expect(a.place("mid-2", latency: 0.55, latencies: threeGroups())?.to == 1)
    }

    @Test func restoreClampsOutOfRangeTiers() {
        let a = TierAssigner(policy: TieringPolicy(), tierCount: 2, assignment: ["a": 0, "b": 5, "c": -1], pins: ["b": 9])
        #expect(a.isFormed && a.tierCount == 2)
        #expect(a.assignment == ["a": 0, "b": 1, "c": 0])
        #expect(a.pins == ["b": 1])
    }
}

@Suite struct TieringPolicyTests {
    @Test func defaultsAreValid() throws {
        try TieringPolicy().validate()
        try TieringPolicy(tierCount: 1, maxTiers: 1, smoothing: 1).validate()
    }

    @Test func invalidFieldsAreNamed() {
        let cases: [(TieringPolicy, String)] = [
            (TieringPolicy(tierCount: 0), "tierCount"),
            (TieringPolicy(maxTiers: 0), "maxTiers"),
            (TieringPolicy(minTierSize: 0), "minTierSize"),
            (TieringPolicy(profilingTasks: 0), "profilingTasks"),
            (TieringPolicy(smoothing: 0), "smoothing"),
            (TieringPolicy(smoothing: 1.5), "smoothing"),
            (TieringPolicy(smoothing: .nan), "smoothing"),
            (TieringPolicy(minGapRatio: 1), "minGapRatio"),
            (TieringPolicy(minGapRatio: .nan), "minGapRatio"),
            (TieringPolicy(hysteresisRounds: 0), "hysteresisRounds"),
            (TieringPolicy(maxMovesPerRebalance: 0), "maxMovesPerRebalance"),
        ]
        for (policy, field) in cases {
            let error = #expect(throws: StrataCoreError.self) { try policy.validate() }
            guard case .invalidArgument(let message)? = error else {
                Issue.record("\(field): expected invalidArgument, got \(String(describing: error))")
                continue
            }
            #expect(message.contains(field), "\(message)")
        }
    }
}

@Suite struct OperatorRetierTests {
    func policy(_ k: Int) -> TieringPolicy {
        var p = TieringPolicy()
        p.tierCount = k
        p.minTierSize = 1
        p.hysteresisRounds = 3
        p.maxMovesPerRebalance = 1
        return p
    }

    @Test func movesEveryDriftedClientAtOnceIgnoringHysteresisAndBudget() throws {
        var assigner = TierAssigner(policy: policy(2))
        _ = try assigner.form(latencies: ["a": 0.1, "b": 0.1, "c": 2, "d": 2])
        // a and b became slow, c and d fast: rebalance would need 3 agreeing periods and move 1 per period.
        let drifted = ["a": 3.0, "b": 3.0, "c": 0.1, "d": 0.1]
        #expect(assigner.rebalance(latencies: drifted).isEmpty)
        let moves = assigner.retier(latencies: drifted)
        #expect(moves.map(\.clientID) == ["a", "b", "c", "d"])
        #expect(moves.allSatisfy { $0.reason == .operator })
        #expect(assigner.tier(of: "a") == 1 && assigner.tier(of: "c") == 0)
        #expect(moves.first { $0.clientID == "a" }?.from == 0)
    }

    @Test func pinnedClientsStayAndNothingMovesWhenTiersAgree() throws {
        var assigner = TierAssigner(policy: policy(2), pins: ["a": 0])
        _ = try assigner.form(latencies: ["a": 0.1, "b": 0.1, "c": 2, "d": 2])
        #expect(assigner.retier(latencies: ["a": 0.1, "b": 0.1, "c": 2, "d": 2]).isEmpty)
        let moves = assigner.retier(latencies: ["a": 3.0, "b": 0.1, "c": 2, "d": 2])
        #expect(!moves.contains { $0.clientID == "a" })
        #expect(assigner.tier(of: "a") == 0)
    }

    @Test func unformedTiersGiveNoMoves() {
        var assigner = TierAssigner(policy: policy(2))
        #expect(assigner.retier(latencies: ["a": 1]).isEmpty)
    }
}

@Suite struct RateWindowTests {
    @Test func ratesOverTheWindowAndForgetsOldSeconds() {
        var window = RateWindow(windowSeconds: 10)
        #expect(window.rate(at: 0) == 0)
        for t in 0..<10 { window.record(5, at: Double(t) + 0.5) }
        #expect(window.rate(at: 9.9) == 5)
        // 20 s later nothing is left in the window.
        #expect(window.rate(at: 29.5) == 0)
        window.record(30, at: 30)
        #expect(window.rate(at: 30.2) == 30 / 10)
    }

    @Test func shortHistoryDividesByItsOwnSpan() {
        var window = RateWindow(windowSeconds: 60)
        window.record(4, at: 100)
        window.record(4, at: 101.5)
        #expect(window.rate(at: 101.9) == 4)
    }
}
