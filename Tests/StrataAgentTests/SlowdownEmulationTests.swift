import StrataStore
import Testing
@testable import StrataAgent

@Suite struct SlowdownEmulationTests {
    @Test func defaultIsInactiveAndAddsNothing() {
        let none = SlowdownEmulation()
        #expect(!none.isActive)
        #expect(none.extraDelay(computeTime: .seconds(3), uniform: 0.9) == .zero)
        #expect(AgentConfiguration(coordinatorHost: "h", coordinatorPort: 1, tls: .init(certificateChainFile: "c", privateKeyFile: "k", trustRootsFile: "a"),
                                   data: SampleDataSource(databasePath: "d", selection: .table(name: "t", featureColumns: nil), labelColumn: "label",
                                               splitColumn: "split", testFraction: 0.2),
                                   statePath: "s").emulation == none)
    }

    @Test func eachSettingMakesItActive() {
        #expect(SlowdownEmulation(addedDelay: .milliseconds(1)).isActive)
        #expect(SlowdownEmulation(slowdownFactor: 1.5).isActive)
        #expect(SlowdownEmulation(jitter: .milliseconds(1)).isActive)
        #expect(!SlowdownEmulation(seed: 42).isActive)
    }

    @Test func fixedDelayIgnoresComputeTimeAndRandom() {
        let e = SlowdownEmulation(addedDelay: .milliseconds(1500))
        #expect(e.extraDelay(computeTime: .zero, uniform: 0) == .milliseconds(1500))
        #expect(e.extraDelay(computeTime: .seconds(7), uniform: 0.99) == .milliseconds(1500))
    }

    @Test func factorAddsFactorMinusOneTimesCompute() {
        let e = SlowdownEmulation(slowdownFactor: 4)
        #expect(e.extraDelay(computeTime: .milliseconds(250), uniform: 0.5) == .milliseconds(750))
        #expect(e.extraDelay(computeTime: .zero, uniform: 0.5) == .zero)
        // Total time = compute + extra = factor × compute.
        let compute = Duration.milliseconds(120)
        #expect(compute + SlowdownEmulation(slowdownFactor: 2.5).extraDelay(computeTime: compute, uniform: 0) == .milliseconds(300))
    }

    @Test func jitterStaysWithinZeroAndJitter() {
        let e = SlowdownEmulation(jitter: .seconds(2))
        #expect(e.extraDelay(computeTime: .seconds(1), uniform: 0) == .zero)
        #expect(e.extraDelay(computeTime: .seconds(1), uniform: 0.25) == .milliseconds(500))
        let nearlyOne = 1.0.nextDown
        let top = e.extraDelay(computeTime: .seconds(1), uniform: nearlyOne)
        #expect(top <= .seconds(2))
        #expect(top > .milliseconds(1999))
    }

    @Test func termsAdd() {
        let e = SlowdownEmulation(addedDelay: .seconds(1), slowdownFactor: 3, jitter: .milliseconds(400), seed: 9)
        // 1 s + 2 × 0.5 s + 0.5 × 0.4 s
        #expect(e.extraDelay(computeTime: .milliseconds(500), uniform: 0.5) == .milliseconds(2200))
    }

    @Test func nonsenseInputsNeverGiveANegativeDelay() {
        let e = SlowdownEmulation(addedDelay: .seconds(1), slowdownFactor: 0.5, jitter: .seconds(1))
        #expect(e.extraDelay(computeTime: .seconds(-5), uniform: -1) == .seconds(1))
        #expect(e.extraDelay(computeTime: .seconds(1), uniform: .nan) == .seconds(1))
        #expect(SlowdownEmulation(slowdownFactor: .infinity).extraDelay(computeTime: .seconds(1), uniform: 0) == .zero)
    }

    @Test func derivedSeedIsStableAndDiffers() {
        let a = SlowdownEmulation.derivedSeed(from: "Certs/out/agents/agent-01.crt")
        #expect(a == SlowdownEmulation.derivedSeed(from: "Certs/out/agents/agent-01.crt"))
        #expect(a != SlowdownEmulation.derivedSeed(from: "Certs/out/agents/agent-02.crt"))
        #expect(SlowdownEmulation.derivedSeed(from: "") == 0xCBF2_9CE4_8422_2325)  // FNV-1a offset basis
        #expect(a != 0)
    }
}

@Suite struct BackoffTests {
    @Test func doublesFromInitialWithJitterOnTheUpperHalf() {
        let b = Backoff()  // 200 ms, ×2, cap 10 s
        #expect(b.delay(attempt: 1, random: 0) == .milliseconds(100))
        #expect(b.delay(attempt: 1, random: 1) == .milliseconds(200))
        #expect(b.delay(attempt: 3, random: 1) == .milliseconds(800))
        #expect(b.delay(attempt: 3, random: 0.5) == .milliseconds(600))
        #expect(b.delay(attempt: 0, random: 1) == .milliseconds(200))
    }

    @Test func cappedAtCap() {
        let b = Backoff()
        #expect(b.delay(attempt: 7, random: 1) == .seconds(10))   // 200 ms · 2^6 = 12.8 s > cap
        #expect(b.delay(attempt: 60, random: 0) == .seconds(5))
    }
}
