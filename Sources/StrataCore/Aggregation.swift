/// Running weighted sum folded one update at a time (no copy of K updates kept).
/// Strata weighs a delta by w_i = n_i · s(σ_i) and normalizes by Σ w_i.
public struct WeightedAccumulator: Sendable {
    /// Σ w_i Δ_i, allocated by the first fold and handed over by `takeStep` as the stepped model: an empty
    /// accumulator holds no model-sized buffer, and a step needs no third one beside the model and the sum.
    private var storage: [Float] = []
    public let parameterCount: Int
    public private(set) var totalWeight: Double
    public private(set) var count: Int

    public init(parameterCount: Int) {
        precondition(parameterCount >= 0, "parameterCount must be >= 0")
        self.parameterCount = parameterCount
        totalWeight = 0
        count = 0
    }

    /// Σ w_i Δ_i (zeros before the first fold).
    public var sum: [Float] { storage.isEmpty ? [Float](repeating: 0, count: parameterCount) : storage }

    /// Where the sum lives, nil while none is allocated (for tests of the hand-over).
    var sumAddress: UInt? { storage.isEmpty ? nil : storage.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) } }

    /// The sum's storage, allocated on first use.
    private mutating func withSum<R>(_ body: (UnsafeMutablePointer<Float>) -> R) -> R {
        if storage.isEmpty { storage = [Float](repeating: 0, count: parameterCount) }
        return storage.withUnsafeMutableBufferPointer { body($0.baseAddress!) }
    }

    private static func checkWeight(_ weight: Float) throws {
        guard weight.isFinite, weight > 0 else {
            throw StrataCoreError.invalidArgument("weight \(weight) must be finite and > 0")
        }
    }

    /// Folds `scale · delta` while counting `weight` in the total: a clipped delta keeps its weight in the
    /// mean's denominator, so clipping shrinks it instead of renormalising it back up.
    public mutating func add(_ delta: some Float32Segments, weight: Float, scale: Float) throws {
        guard scale.isFinite, scale > 0, scale <= 1 else {
            throw StrataCoreError.invalidArgument("scale \(scale) must be in (0, 1]")
        }
        guard scale < 1 else { return try fold(delta, weight: weight) }
        try fold(delta, weight: weight, axpyWeight: weight * scale)
    }

    /// Throws `shapeMismatch` (element counts) or `invalidArgument` for a weight that is not finite and > 0.
    public mutating func add(_ delta: [Float], weight: Float) throws {
        try fold(delta, weight: weight)
    }

    /// Folds a delta where it lies (e.g. the tensors of a received frame, any alignment), without
    /// materialising an array: sum[i] += weight · delta[i] in index order, the same result as the array
    /// form. Throws `shapeMismatch` (element counts) or `invalidArgument` for a weight that is not finite and > 0.
    public mutating func add(_ delta: some Float32Segments, weight: Float) throws {
        try fold(delta, weight: weight)
    }

    private mutating func fold(_ delta: some Float32Segments, weight: Float, axpyWeight: Float? = nil) throws {
        guard delta.count == parameterCount else {
            throw StrataCoreError.shapeMismatch(expected: parameterCount, actual: delta.count)
        }
        try Self.checkWeight(weight)
        let factor = axpyWeight ?? weight
        if parameterCount > 0 {
            withSum { a in
                delta.forEachRun { first, p, n in Float32LE.axpy(a + first, p, count: n, weight: factor) }
            }
        }
        totalWeight += Double(weight)
        count += 1
    }

    /// Fold a delta straight from little-endian Float32 bytes (as received on the wire), without
    /// materialising an array. Throws `shapeMismatch(expected: 4·parameterCount, actual: byteCount)` — in
    /// BYTES — if the size is wrong, `invalidArgument` for a bad weight.
    public mutating func add(littleEndianFloat32 bytes: UnsafeRawBufferPointer, weight: Float) throws {
        let n = parameterCount
        guard bytes.count == 4 * n else {
            throw StrataCoreError.shapeMismatch(expected: 4 * n, actual: bytes.count)
        }
        try Self.checkWeight(weight)
        if n > 0 {
            let src = bytes.baseAddress!
            withSum { Float32LE.axpy($0, src, count: n, weight: weight) }
        }
        totalWeight += Double(weight)
        count += 1
    }

    /// sum / totalWeight; zeros if empty.
    public func weightedMean() -> [Float] {
        guard count > 0, totalWeight > 0, !storage.isEmpty else { return [Float](repeating: 0, count: parameterCount) }
        let inv = Float(1 / totalWeight)
        return storage.map { $0 * inv }
    }

    /// One server step fused into a single pass, leaving the accumulator empty: returns the model stepped by
    /// `optimizer` with Δ̄ = sum / totalWeight (see `ServerOptimizer`). The values are those of
    /// `weightedMean()`, `AggregationStep.apply` and `reset()` bit for bit, in one read of the model and the
    /// sum instead of several model-sized passes. The stepped model is written over the sum and handed back
    /// (the next fold allocates a new sum), so a step holds two models, not three, and a model that is still
    /// shared (the global model, a task's tensors) is not copied.
    public mutating func takeStep(on model: [Float], optimizer: some ServerOptimizer, state: inout ServerOptimizerState) -> [Float] {
        let n = parameterCount
        precondition(model.count == n, "model.count \(model.count) != parameterCount \(n)")
        let inv: Float = count > 0 && totalWeight > 0 ? Float(1 / totalWeight) : 0
        var stepped = storage.isEmpty ? [Float](repeating: 0, count: n) : storage
        storage = []   // `stepped` is now the sum's only reference: written in place, not copied
        if n > 0 {
            model.withUnsafeBufferPointer { xb in
                stepped.withUnsafeMutableBufferPointer { sb in
                    optimizer.step(model: xb.baseAddress!, deltaSum: UnsafePointer(sb.baseAddress!), scale: inv, into: sb.baseAddress!,
                                   count: n, state: &state)
                }
            }
        }
        totalWeight = 0
        count = 0
        return stepped
    }

    /// Empties the accumulator and releases its sum.
    public mutating func reset() {
        storage = []
        totalWeight = 0
        count = 0
    }
}

public enum UpdateValidation {
    /// Validate a delta before it touches a model. Checks, in order: the element count
    /// (`shapeMismatch`), every element finite (`nonFinite(index:)` of the first bad one), and, when
    /// `maxNorm` is given, ‖delta‖₂ ≤ maxNorm (`invalidArgument("norm ... exceeds bound ...")`).
    /// Returns ‖delta‖₂.
    @discardableResult
    public static func validate(delta: [Float], expectedCount: Int, maxNorm: Float?) throws -> Double {
        try check(delta, expectedCount: expectedCount, maxNorm: maxNorm)
    }

    /// The same checks on a delta read where it lies (e.g. the tensors of a received frame): the same
    /// errors and the same first bad index as for the same values in an array; the norm may differ from
    /// the array's in the last bits only (each segment's values are dealt to the eight partial sums from
    /// the segment's own start).
    /// Returns ‖delta‖₂.
    @discardableResult
    public static func validate(delta: some Float32Segments, expectedCount: Int, maxNorm: Float?) throws -> Double {
        try check(delta, expectedCount: expectedCount, maxNorm: maxNorm)
    }

    private static func check(_ delta: some Float32Segments, expectedCount: Int, maxNorm: Float?) throws -> Double {
        guard delta.count == expectedCount else {
            throw StrataCoreError.shapeMismatch(expected: expectedCount, actual: delta.count)
        }
        // One pass: the sum of squares is finite exactly when every element is (a Float squared in Double
        // cannot overflow, and 2^31 of them cannot either); only a bad update pays for locating the culprit.
        let sumOfSquares = SquareSums.of(delta)
        guard sumOfSquares.isFinite else {
            throw StrataCoreError.nonFinite(index: delta.firstNonFiniteIndex() ?? 0)
        }
        if let bound = maxNorm {
            guard bound.isFinite, bound >= 0 else {
                throw StrataCoreError.invalidArgument("norm bound \(bound) must be finite and >= 0")
            }
            let norm = Float(sumOfSquares.squareRoot())
            if norm > bound {
                throw StrataCoreError.invalidArgument("norm \(norm) exceeds bound \(bound)")
            }
        }
        return sumOfSquares.squareRoot()
    }

    /// Euclidean norm (see `SquareSums` for how it is summed).
    public static func l2Norm(_ v: [Float]) -> Float {
        Float(sumOfSquares(v).squareRoot())
    }

    /// Σ x² in SIMD Float blocks joined in Double (`SquareSums`): memory speed, ~1e-6 relative error at most.
    static func sumOfSquares(_ v: [Float]) -> Double {
        SquareSums.of(v)
    }
}

public enum AggregationStep {
    /// One step of `optimizer` on `model` with the mean delta `meanDelta` (what `WeightedAccumulator.takeStep`
    /// does from a buffer's sum, unfused).
    public static func apply(model: inout [Float], meanDelta: [Float], optimizer: some ServerOptimizer, state: inout ServerOptimizerState) {
        let n = model.count
        precondition(meanDelta.count == n, "meanDelta.count \(meanDelta.count) != model.count \(n)")
        guard n > 0 else { return }
        let before = model
        before.withUnsafeBufferPointer { x in
            meanDelta.withUnsafeBufferPointer { d in
                model.withUnsafeMutableBufferPointer { out in
                    optimizer.step(model: x.baseAddress!, deltaSum: d.baseAddress!, scale: 1, into: out.baseAddress!, count: n, state: &state)
                }
            }
        }
    }

    /// FedAsync mixing x ← (1 − a)·x + a·x_new with a = alpha · s(σ), clamped to [0, 1].
    public static func mix(model: inout [Float], clientModel: [Float], alpha: Double, staleness: Int, function: StalenessFunction) {
        precondition(clientModel.count == model.count, "clientModel.count \(clientModel.count) != model.count \(model.count)")
        var a = alpha * function.factor(staleness: staleness)
        if !(a >= 0) { a = 0 }   // also catches NaN
        if a > 1 { a = 1 }
        let af = Float(a), keep = Float(1 - a)
        let n = model.count
        model.withUnsafeMutableBufferPointer { x in
        clientModel.withUnsafeBufferPointer { c in
            for i in 0..<n { x[i] = keep * x[i] + af * c[i] }
        }}
    }
}
