import Testing
@testable import StrataCore

/// A delta as it lies in a received frame: little-endian Float32 runs inside one byte array, each run
/// starting after a gap of a few bytes, so no segment (but possibly the first) is Float-aligned.
struct SplitDelta: Float32Segments {
    let storage: [UInt8]
    let ranges: [Range<Int>]

    /// `values` cut at `cuts` (flat indices, ascending), run k preceded by `gaps[k % gaps.count]` junk bytes.
    init(_ values: [Float], cuts: [Int], gaps: [Int] = [1, 3, 2, 5]) {
        var storage: [UInt8] = []
        var ranges: [Range<Int>] = []
        let bounds = [0] + cuts + [values.count]
        for k in 0..<(bounds.count - 1) {
            storage += [UInt8](repeating: 0xEE, count: gaps[k % gaps.count])
            let start = storage.count
            for v in values[bounds[k]..<bounds[k + 1]] { withUnsafeBytes(of: v.bitPattern.littleEndian) { storage += $0 } }
            ranges.append(start..<storage.count)
        }
        self.storage = storage
        self.ranges = ranges
    }

    var count: Int { ranges.reduce(0) { $0 + $1.count } / 4 }

    func forEachSegment(_ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        try storage.withUnsafeBytes { raw in
            for r in ranges { try body(UnsafeRawBufferPointer(rebasing: raw[r])) }
        }
    }
}

@Suite struct Float32SegmentsTests {
    static func values(_ n: Int, seed: UInt64) -> [Float] {
        var g = SeededGenerator(seed: seed)
        return (0..<n).map { _ in Float(g.nextNormal()) }
    }

    @Test func unalignedSegmentsReadTheSameValues() {
        let v = Self.values(1001, seed: 11)
        // Cuts inside the 8-wide blocks, an empty run, and a one-value run.
        let split = SplitDelta(v, cuts: [3, 17, 17, 500, 501, 1000])
        #expect(split.count == 1001)
        #expect(split.floats().map(\.bitPattern) == v.map(\.bitPattern))
        #expect(v.floats().map(\.bitPattern) == v.map(\.bitPattern))
        #expect(split.firstNonFiniteIndex() == nil)
    }

    @Test func segmentsFoldBitIdenticallyToTheArray() throws {
        let deltas = (0..<4).map { Self.values(1001, seed: 20 + UInt64($0)) }
        let weights: [Float] = [120, 35.5, 7, 0.3]
        var viaArray = WeightedAccumulator(parameterCount: 1001)
        var viaSegments = WeightedAccumulator(parameterCount: 1001)
        var viaExistential = WeightedAccumulator(parameterCount: 1001)
        for (k, (d, w)) in zip(deltas, weights).enumerated() {
            try viaArray.add(d, weight: w)
            let split = SplitDelta(d, cuts: [k + 1, 64 + k, 777])
            try viaSegments.add(split, weight: w)
            let any: any Float32Segments = split
            try viaExistential.add(any, weight: w)
        }
        #expect(viaArray.sum.map(\.bitPattern) == viaSegments.sum.map(\.bitPattern))
        #expect(viaArray.sum.map(\.bitPattern) == viaExistential.sum.map(\.bitPattern))
        #expect(viaArray.totalWeight == viaSegments.totalWeight && viaArray.count == viaSegments.count)
    }

    @Test func segmentsValidateLikeTheArray() throws {
        let v = Self.values(1003, seed: 30)
        let split = SplitDelta(v, cuts: [5, 333, 334])
        let norm = UpdateValidation.l2Norm(v)
        // Same norm up to summation order: a bound just above passes, just below refuses, both ways.
        try UpdateValidation.validate(delta: v, expectedCount: 1003, maxNorm: norm * 1.0001)
        try UpdateValidation.validate(delta: split, expectedCount: 1003, maxNorm: norm * 1.0001)
        #expect(throws: StrataCoreError.self) { try UpdateValidation.validate(delta: split, expectedCount: 1003, maxNorm: norm * 0.9999) }
        #expect(abs(Float(SquareSums.of(split).squareRoot()) - norm) <= norm * 1e-6)
        #expect(throws: StrataCoreError.invalidArgument("norm bound -1.0 must be finite and >= 0")) {
            try UpdateValidation.validate(delta: split, expectedCount: 1003, maxNorm: -1)
        }
    }

    @Test(arguments: [332, 333, 334, 0, 1002])
    func nonFiniteAtASegmentBoundaryGivesItsFlatIndex(bad: Int) {
        for poison: Float in [.nan, .infinity, -.infinity] {
            var v = Self.values(1003, seed: 31)
            v[bad] = poison
            if bad + 1 < v.count { v[bad + 1] = .nan }   // a later bad value must not win
            // Segments [0,333), [333,334), [334,1003): 332 ends one, 333 is one alone, 334 starts one.
            let split = SplitDelta(v, cuts: [333, 334])
            #expect(split.firstNonFiniteIndex() == bad)
            #expect(throws: StrataCoreError.nonFinite(index: bad)) {
                try UpdateValidation.validate(delta: split, expectedCount: 1003, maxNorm: nil)
            }
            #expect(throws: StrataCoreError.nonFinite(index: bad)) {
                try UpdateValidation.validate(delta: v, expectedCount: 1003, maxNorm: nil)
            }
        }
    }

    @Test func wrongTotalCountIsRefused() {
        let v = Self.values(10, seed: 32)
        let split = SplitDelta(v, cuts: [4])
        #expect(throws: StrataCoreError.shapeMismatch(expected: 11, actual: 10)) {
            try UpdateValidation.validate(delta: split, expectedCount: 11, maxNorm: nil)
        }
        #expect(throws: StrataCoreError.shapeMismatch(expected: 9, actual: 10)) {
            try UpdateValidation.validate(delta: split, expectedCount: 9, maxNorm: nil)
        }
        var acc = WeightedAccumulator(parameterCount: 11)
        #expect(throws: StrataCoreError.shapeMismatch(expected: 11, actual: 10)) { try acc.add(split, weight: 1) }
        #expect(acc.count == 0 && acc.totalWeight == 0 && acc.sum.allSatisfy { $0 == 0 })
    }

    @Test func rulesFoldAndMixSegmentsLikeArrays() {
        let n = 257
        let start = Self.values(n, seed: 40)
        let deltas = (0..<5).map { k in Self.values(n, seed: 41 + UInt64(k)).map { $0 * 0.01 } }
        for mode in [AggregationMode.fedbuff, .fedasync, .strata] {
            var settings = RuleSettings.defaults(for: mode)
            settings.bufferSize = 2
            settings.bufferTimeout = nil
            var viaArray = mode.makeRule(settings: settings, parameters: start)
            var viaSegments = mode.makeRule(settings: settings, parameters: start)
            let clients = (0..<5).map { ClientView(id: "c\($0)", tier: nil) }
            _ = viaArray.schedule(idle: clients, connected: clients, now: 0)
            _ = viaSegments.schedule(idle: clients, connected: clients, now: 0)
            for (k, d) in deltas.enumerated() {
                let base = Int64(k / 2)
                let a = RuleUpdate(taskID: Int64(k), clientID: "c\(k)", lane: 0, baseVersion: base, sampleCount: Int64(10 + k), delta: d)
                let s = RuleUpdate(taskID: Int64(k), clientID: "c\(k)", lane: 0, baseVersion: base, sampleCount: Int64(10 + k),
                                   delta: SplitDelta(d, cuts: [7, 100 + k]))
                #expect(viaArray.accept(a, now: Double(k)) == viaSegments.accept(s, now: Double(k)))
                let outA = viaArray.aggregations(now: Double(k)), outS = viaSegments.aggregations(now: Double(k))
                #expect(outA.map(\.globalVersion) == outS.map(\.globalVersion))
                #expect(outA.map { $0.globalParameters.map(\.bitPattern) } == outS.map { $0.globalParameters.map(\.bitPattern) })
            }
            #expect(viaArray.globalVersion > 0, "\(mode) stepped")
            #expect(viaArray.globalParameters.map(\.bitPattern) == viaSegments.globalParameters.map(\.bitPattern), "\(mode)")
        }
    }

    /// Σ x² with every square in Double, in index order: the reference for `SquareSums`.
    static func exactSquareSum(_ v: [Float]) -> Double {
        v.reduce(0.0) { $0 + Double($1) * Double($1) }
    }

    @Test func squareSumsMatchDoubleSummation() {
        // Values over ten orders of magnitude, an odd count (partial last block and a tail of < 32 values),
        // read as one array and as unaligned segments that cut blocks.
        var v = Self.values(100_003, seed: 40)
        for i in stride(from: 0, to: v.count, by: 7) { v[i] *= 1e5 }
        for i in stride(from: 3, to: v.count, by: 11) { v[i] *= 1e-5 }
        let exact = Self.exactSquareSum(v)
        let split = SplitDelta(v, cuts: [1, 511, 513, 50_000])
        for sum in [SquareSums.of(v), SquareSums.of(split)] {
            #expect(abs(sum - exact) <= exact * 4e-6, "sum \(sum) vs exact \(exact)")
        }
        let small: [Float] = [3, 4]
        #expect(SquareSums.of(small) == 25)
        #expect(SquareSums.of([Float]()) == 0)
    }

    @Test func squareSumsOfHugeFiniteValuesStayFinite() {
        // Squares above Float's range (|x| > 1.8e19) must not read as non-finite: the block is summed in Double.
        var v = Self.values(1000, seed: 41)
        v[700] = 1e20
        v[701] = -3e38
        let exact = Self.exactSquareSum(v)
        let sum = SquareSums.of(v)
        #expect(sum.isFinite)
        #expect(abs(sum - exact) <= exact * 1e-12)
        #expect(throws: Never.self) { try UpdateValidation.validate(delta: v, expectedCount: 1000, maxNorm: nil) }
        #expect(throws: StrataCoreError.self) { try UpdateValidation.validate(delta: v, expectedCount: 1000, maxNorm: 1e30) }
    }

    @Test(arguments: [Float.nan, .infinity, -.infinity])
    func squareSumsSeeEveryNonFiniteValue(poison: Float) {
        for index in [0, 31, 32, 511, 512, 999] {
            var v = Self.values(1000, seed: 42)
            v[index] = poison
            #expect(!SquareSums.of(v).isFinite, "\(poison) at \(index)")
            #expect(throws: StrataCoreError.nonFinite(index: index)) {
                try UpdateValidation.validate(delta: v, expectedCount: 1000, maxNorm: nil)
            }
        }
    }

}
