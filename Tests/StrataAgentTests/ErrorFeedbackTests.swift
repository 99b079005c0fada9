import StrataCore
import StrataWire
import Testing
@testable import StrataAgent

/// Error feedback: a lossy encoding delays what it drops, never loses it. After any number of compressed
/// deltas, what was sent plus what is held back is what was trained.
@Suite struct ErrorFeedbackTests {
    static let spec = ModelSpec(kind: .softmaxRegression, featureCount: 20, outputCount: 5)

    static func delta(_ random: inout SeededGenerator) -> [Float] {
        (0..<spec.parameterCount).map { _ in Float(random.nextUniform() - 0.45) * 0.1 }
    }

    @Test(arguments: [DeltaEncoding.q8, .topK(fraction: 0.05), .topK(fraction: 0.5)])
    func whatWasSentPlusWhatIsHeldIsWhatWasTrained(_ encoding: DeltaEncoding) throws {
        var feedback = ErrorFeedback()
        var random = SeededGenerator(seed: 11)
        var trained = [Double](repeating: 0, count: Self.spec.parameterCount)
        var sent = trained
        for _ in 0..<40 {
            let delta = Self.delta(&random)
            for i in delta.indices { trained[i] += Double(delta[i]) }
            let result = feedback.compress(delta, spec: Self.spec, as: encoding)
            let compressed = try #require(result)
            for (i, value) in compressed.decodedValues().enumerated() { sent[i] += Double(value) }
        }
        for i in trained.indices {
            #expect(abs(sent[i] + Double(feedback.residual[i]) - trained[i]) < 1e-4, "value \(i)")
        }
        // Without feedback, top-k at 5 % would have dropped most of the mass; with it the residual stays small
        // against the 40 steps' sum.
        let held = feedback.residual.map { abs(Double($0)) }.reduce(0, +)
        let total = trained.map { abs($0) }.reduce(0, +)
        #expect(held < total * 0.5, "held \(held) of \(total)")
    }

    @Test func q8HoldsBackAtMostHalfAStep() throws {
        var feedback = ErrorFeedback()
        var random = SeededGenerator(seed: 5)
        let delta = Self.delta(&random)
        #expect(feedback.compress(delta, spec: Self.spec, as: .q8) != nil)
        let weights = Array(delta[0 ..< Self.spec.featureCount * Self.spec.outputCount])
        let step = (weights.max()! - weights.min()!) / 255
        for value in feedback.residual.prefix(weights.count) { #expect(abs(value) <= step / 2 * 1.001) }
    }

    @Test func float32KeepsNothingAndAResetForgets() throws {
        var feedback = ErrorFeedback()
        var random = SeededGenerator(seed: 5)
        let none = feedback.compress(Self.delta(&random), spec: Self.spec, as: .float32)
        #expect(none == nil)
        #expect(feedback.residual.isEmpty)
        _ = feedback.compress(Self.delta(&random), spec: Self.spec, as: .topK(fraction: 0.1))
        #expect(!feedback.residual.isEmpty)
        feedback.reset()
        #expect(feedback.residual.isEmpty)
    }

    @Test func aNonFiniteDeltaDoesNotPoisonTheNextOnes() throws {
        var feedback = ErrorFeedback()
        var random = SeededGenerator(seed: 5)
        var bad = Self.delta(&random)
        bad[3] = .nan
        _ = feedback.compress(bad, spec: Self.spec, as: .q8)
        let result = feedback.compress(Self.delta(&random), spec: Self.spec, as: .q8)
        let next = try #require(result)
        #expect(next.decodedValues().allSatisfy { $0.isFinite })
    }
}
