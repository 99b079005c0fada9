import Testing
@testable import StrataCore

@Suite struct WeightedAccumulatorTests {
    @Test func handComputedWeightedMean() throws {
        var acc = WeightedAccumulator(parameterCount: 2)
        #expect(acc.weightedMean() == [0, 0])
        try acc.add([1, 2], weight: 1)
        try acc.add([3, -1], weight: 2)
        try acc.add([0, 4], weight: 1)
        #expect(acc.count == 3)
        #expect(acc.totalWeight == 4)
        #expect(acc.sum == [7, 4])
        #expect(acc.weightedMean() == [1.75, 1])
        acc.reset()
        #expect(acc.count == 0 && acc.totalWeight == 0 && acc.sum == [0, 0])
    }

    @Test func bytesPathEqualsArrayPath() throws {
        var g = SeededGenerator(seed: 4)
        let deltas = (0..<3).map { _ in (0..<1001).map { _ in Float(g.nextNormal()) } }
        let weights: [Float] = [120, 35.5, 7]
        var viaArray = WeightedAccumulator(parameterCount: 1001)
        var viaBytes = WeightedAccumulator(parameterCount: 1001)
        for (d, w) in zip(deltas, weights) {
            try viaArray.add(d, weight: w)
            // Serialize little-endian, then offset by one byte so the loads are unaligned.
            var bytes: [UInt8] = [0xAB]
            for v in d { withUnsafeBytes(of: v.bitPattern.littleEndian) { bytes += $0 } }
            try bytes.withUnsafeBytes { raw in
                try viaBytes.add(littleEndianFloat32: UnsafeRawBufferPointer(rebasing: raw[1...]), weight: w)
            }
        }
        #expect(viaArray.sum.map(\.bitPattern) == viaBytes.sum.map(\.bitPattern))
        // Both equal the plain element-by-element fold, sum[i] += w·Δ[i], bit for bit.
        var reference = [Float](repeating: 0, count: 1001)
        for (d, w) in zip(deltas, weights) { for i in reference.indices { reference[i] += w * d[i] } }
        #expect(viaArray.sum.map(\.bitPattern) == reference.map(\.bitPattern))
        #expect(viaArray.totalWeight == viaBytes.totalWeight)
        #expect(viaArray.count == 3 && viaBytes.count == 3)
    }

    @Test func shapeMismatchThrows() throws {
        var acc = WeightedAccumulator(parameterCount: 3)
        #expect(throws: StrataCoreError.shapeMismatch(expected: 3, actual: 2)) { try acc.add([1, 2], weight: 1) }
        let bytes: [UInt8] = Array(repeating: 0, count: 8)
        #expect(throws: StrataCoreError.shapeMismatch(expected: 12, actual: 8)) {
            try bytes.withUnsafeBytes { try acc.add(littleEndianFloat32: $0, weight: 1) }
        }
        #expect(acc.count == 0)
    }

    @Test(arguments: [Float.nan, .infinity, 0, -1])
    func badWeightThrows(weight: Float) {
        var acc = WeightedAccumulator(parameterCount: 2)
        #expect(throws: StrataCoreError.self) { try acc.add([1, 2], weight: weight) }
        let bytes: [UInt8] = Array(repeating: 0, count: 8)
        #expect(throws: StrataCoreError.self) {
            try bytes.withUnsafeBytes { try acc.add(littleEndianFloat32: $0, weight: weight) }
        }
        #expect(acc.count == 0 && acc.sum == [0, 0])
    }
}

@Suite struct UpdateValidationTests {
    @Test func acceptsGoodDelta() throws {
        try UpdateValidation.validate(delta: [3, 4], expectedCount: 2, maxNorm: 5)
        try UpdateValidation.validate(delta: [3, 4], expectedCount: 2, maxNorm: nil)
        #expect(UpdateValidation.l2Norm([3, 4]) == 5)
        #expect(UpdateValidation.l2Norm([]) == 0)
    }

    @Test func longVectorsFindTheFirstBadIndexAndTheNormInEveryLane() throws {
        // 1003 values: the unrolled part (8 per step) and the tail both count.
        var ones = [Float](repeating: 1, count: 1003)
        #expect(abs(UpdateValidation.l2Norm(ones) - Float(1003).squareRoot()) < 1e-4)
        for bad in [13, 1000, 1002] {
            var v = ones
            v[bad] = .nan
            v[min(bad + 1, 1002)] = .infinity
            #expect(throws: StrataCoreError.nonFinite(index: bad)) { try UpdateValidation.validate(delta: v, expectedCount: 1003, maxNorm: nil) }
        }
        // The largest finite floats are finite: squares accumulate in Double without overflow.
        ones[7] = .greatestFiniteMagnitude
        ones[8] = -.greatestFiniteMagnitude
        try UpdateValidation.validate(delta: ones, expectedCount: 1003, maxNorm: nil)
        #expect(throws: StrataCoreError.self) { try UpdateValidation.validate(delta: ones, expectedCount: 1003, maxNorm: 1e30) }
    }

    @Test func reportsShapeThenNonFiniteIndexThenNorm() {
        #expect(throws: StrataCoreError.shapeMismatch(expected: 3, actual: 2)) {
            try UpdateValidation.validate(delta: [1, .nan], expectedCount: 3, maxNorm: nil)
        }
        #expect(throws: StrataCoreError.nonFinite(index: 2)) {
            try UpdateValidation.validate(delta: [1, 2, .nan, .infinity], expectedCount: 4, maxNorm: nil)
        }
        #expect(throws: StrataCoreError.nonFinite(index: 1)) {
            try UpdateValidation.validate(delta: [1, -.infinity], expectedCount: 2, maxNorm: 1e9)
        }
        do {
            try UpdateValidation.validate(delta: [3, 4], expectedCount: 2, maxNorm: 4.9)
            Issue.record("norm bound not enforced")
        } catch StrataCoreError.invalidArgument(let message) {
            #expect(message.contains("exceeds bound"))
        } catch {
            Issue.record("wrong error \(error)")
        }
    }
}

@Suite struct AggregationStepTests {
    @Test func fedBuffStepWithEta07() {
        var model: [Float] = [1, -1]
        let opt = ServerSGD(learningRate: 0.7)
        var state = opt.makeState(parameterCount: 2)
        #expect(state.footprint == 0, "no velocity without momentum")
        AggregationStep.apply(model: &model, meanDelta: [0.5, 1], optimizer: opt, state: &state)
        #expect(approxEqual(model, [1.35, -0.3], tolerance: 1e-6), "\(model)")
    }

    @Test func momentumTwoSteps() {
        let opt = ServerSGD(learningRate: 0.5, momentum: 0.9)
        var model: [Float] = [0, 0]
        var state = opt.makeState(parameterCount: 2)
        AggregationStep.apply(model: &model, meanDelta: [1, -2], optimizer: opt, state: &state)
        #expect(approxEqual(state.first, [1, -2]))
        #expect(approxEqual(model, [0.5, -1]))
        AggregationStep.apply(model: &model, meanDelta: [2, 0], optimizer: opt, state: &state)
        // m = 0.9*(1,-2) + (2,0) = (2.9, -1.8); x = (0.5,-1) + 0.5*m = (1.95, -1.9)
        #expect(approxEqual(state.first, [2.9, -1.8]))
        #expect(approxEqual(model, [1.95, -1.9]))
    }

    /// An accumulator holds no model-sized sum until its first fold, and its step writes the new model over the sum
    /// and hands that buffer back: a step holds the old model and the sum, no third model (issue 13's memory bound).
    @Test func theStepIsWrittenOverTheSumAndAnEmptyAccumulatorHoldsNone() throws {
        let n = 1_000
        var accumulator = WeightedAccumulator(parameterCount: n)
        #expect(accumulator.sumAddress == nil && accumulator.sum == [Float](repeating: 0, count: n))
        try accumulator.add([Float](repeating: 1, count: n), weight: 2)
        try accumulator.add([Float](repeating: 4, count: n), weight: 2)
        let address = try #require(accumulator.sumAddress)
        let model = [Float](repeating: 0.5, count: n)
        var state = ServerSGD(learningRate: 1).makeState(parameterCount: n)
        let stepped = accumulator.takeStep(on: model, optimizer: ServerSGD(learningRate: 1), state: &state)
        #expect(stepped == [Float](repeating: 3, count: n))
        #expect(stepped.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) } == address, "the step got a new buffer")
        #expect(accumulator.sumAddress == nil && accumulator.count == 0 && model == [Float](repeating: 0.5, count: n))
        try accumulator.add([Float](repeating: 1, count: n), weight: 1)
        #expect(accumulator.sumAddress != nil && accumulator.sumAddress != address)
        accumulator.reset()
        #expect(accumulator.sumAddress == nil)
    }

    /// The fused step gives what the three separate passes give, bit for bit, over several steps.
    @Test(arguments: [Float(0), 0.9])
    func fusedStepEqualsMeanApplyReset(momentum: Float) throws {
        let n = 1_037
        let opt = ServerSGD(learningRate: 0.7, momentum: momentum)
        var g = SeededGenerator(seed: 7)
        var fusedModel = (0..<n).map { _ in Float(g.nextNormal()) }
        var referenceModel = fusedModel
        var fusedState = opt.makeState(parameterCount: n), referenceState = fusedState
        var fused = WeightedAccumulator(parameterCount: n), reference = fused
        for step in 0..<3 {
            for k in 0..<(step + 2) {
                let delta = (0..<n).map { _ in Float(g.nextNormal()) * 0.1 }
                let weight = Float(k + 1) * 13.5
                try fused.add(delta, weight: weight)
                try reference.add(delta, weight: weight)
            }
            let shared = fusedModel   // still referenced elsewhere, as the global model is: must stay unchanged
            fusedModel = fused.takeStep(on: fusedModel, optimizer: opt, state: &fusedState)
            AggregationStep.apply(model: &referenceModel, meanDelta: reference.weightedMean(), optimizer: opt, state: &referenceState)
            reference.reset()
            #expect(fusedModel.map(\.bitPattern) == referenceModel.map(\.bitPattern), "step \(step)")
            #expect(shared != fusedModel)
            #expect(fused.count == 0 && fused.totalWeight == 0 && fused.sum.allSatisfy { $0.bitPattern == 0 })
            if momentum != 0 {
                #expect(fusedState.first.map(\.bitPattern) == referenceState.first.map(\.bitPattern))
            }
        }
        // An empty buffer steps by the velocity alone (zero with β = 0).
        var empty = WeightedAccumulator(parameterCount: n)
        let plain = ServerSGD(learningRate: 0.7)
        var emptyState = plain.makeState(parameterCount: n)
        #expect(empty.takeStep(on: fusedModel, optimizer: plain, state: &emptyState) == fusedModel)
    }

    @Test func fedAsyncMix() {
        var model: [Float] = [1, 2]
        // a = 0.6 * (3+1)^-0.5 = 0.3 -> 0.7*x + 0.3*x_new
        AggregationStep.mix(model: &model, clientModel: [3, -2], alpha: 0.6, staleness: 3,
                            function: .polynomial(exponent: 0.5))
        #expect(approxEqual(model, [1.6, 0.8]), "\(model)")
        var m2: [Float] = [1, 2]
        AggregationStep.mix(model: &m2, clientModel: [3, -2], alpha: 0.6, staleness: 5,
                            function: .hinge(slope: 10, threshold: 4))
        // a = 0.6/11
        let a: Float = 0.6 / 11
        #expect(approxEqual(m2, [(1 - a) * 1 + a * 3, (1 - a) * 2 + a * -2]))
        var m3: [Float] = [1, 2]
        AggregationStep.mix(model: &m3, clientModel: [3, -2], alpha: 1, staleness: 0, function: .constant)
        #expect(m3 == [3, -2])
    }
}
