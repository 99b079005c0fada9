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
