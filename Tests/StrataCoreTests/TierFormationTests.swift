import Testing
@testable import StrataCore

/// Forming tiers before the slowest agents are profiled, from how long their tasks have been out.
@Suite struct TierFormationTests {
    let fast: [String: Double] = ["a": 0.1, "b": 0.12, "c": 0.5]

    @Test func everyoneProfiledFormsWithTheProfiles() {
        #expect(TierFormation.latencies(profiled: fast, unprofiled: [:], stragglerFactor: 4, minimumProfiled: 1) == fast)
    }

    @Test func aStragglerOutLongEnoughJoinsWithItsLowerBound() throws {
        let formed = try #require(TierFormation.latencies(profiled: fast, unprofiled: ["slow": 2.5], stragglerFactor: 4, minimumProfiled: 1))
        #expect(formed["slow"] == 2.5)
        #expect(formed.count == 4)
        // The lower bound puts it in its own, slowest tier.
        let tiers = TierPlanner.partition(formed, tierCount: nil, policy: TieringPolicy())
        #expect(tiers.last?.contains("slow") == true)
        #expect(tiers.last?.count == 1)
    }

    @Test func waitsWhileAnUnprofiledAgentCouldStillBeFast() {
        // 1.9 s out, the slowest profiled takes 0.5 s: it may be a 0.6-s agent with one slow task.
        #expect(TierFormation.latencies(profiled: fast, unprofiled: ["slow": 1.9], stragglerFactor: 4, minimumProfiled: 1) == nil)
        // No task out yet: nothing is known.
        #expect(TierFormation.latencies(profiled: fast, unprofiled: ["new": nil], stragglerFactor: 4, minimumProfiled: 1) == nil)
        // Nobody profiled, or fewer than a tier's minimum.
        #expect(TierFormation.latencies(profiled: [:], unprofiled: ["x": 100], stragglerFactor: 4, minimumProfiled: 1) == nil)
        #expect(TierFormation.latencies(profiled: ["a": 0.1], unprofiled: ["x": 100], stragglerFactor: 4, minimumProfiled: 2) == nil)
    }
}

extension TierFormationTests {
    @Test func factorZeroWaitsForEveryProfile() {
        #expect(TierFormation.latencies(profiled: fast, unprofiled: ["slow": 1000], stragglerFactor: 0, minimumProfiled: 1) == nil)
        #expect(TierFormation.latencies(profiled: fast, unprofiled: [:], stragglerFactor: 0, minimumProfiled: 1) == fast)
    }
}

extension TierFormationTests {
    /// Found by the Byzantine integration test: two instant attackers were the only profiled agents after a few
    /// milliseconds, set the straggler bound, and formed a tier of their own that committed 4,066 of their
    /// updates against 552 honest ones in 45 s (accuracy 0.90 against a clean 0.96). Tiers form early only
    /// once a majority of the connected agents is profiled.
    @Test func twoInstantAgentsAmongTenDoNotFormTiersEarly() throws {
        let instant: [String: Double] = ["x": 0.002, "y": 0.003]
        let honest = Dictionary(uniqueKeysWithValues: (1...8).map { ("h\($0)", Optional(0.5)) })
        #expect(TierFormation.latencies(profiled: instant, unprofiled: honest, stragglerFactor: 4, minimumProfiled: 2) == nil)
        // Once six of ten are profiled, the other four may join as stragglers.
        var profiled = instant
        for i in 1...4 { profiled["h\(i)"] = 0.4 }
        let stragglers = Dictionary(uniqueKeysWithValues: (5...8).map { ("h\($0)", Optional(2.0)) })
        let formed = try #require(TierFormation.latencies(profiled: profiled, unprofiled: stragglers, stragglerFactor: 4, minimumProfiled: 2))
        #expect(formed.count == 10)
        // Exactly half is not a majority.
        let half = Dictionary(uniqueKeysWithValues: (5...6).map { ("h\($0)", Optional(2.0)) })
        var four = instant
        for i in 1...2 { four["h\(i)"] = 0.4 }
        #expect(TierFormation.latencies(profiled: four, unprofiled: half.merging(["h7": 2.0, "h8": 2.0]) { a, _ in a }, stragglerFactor: 4, minimumProfiled: 2) == nil)
    }
}
