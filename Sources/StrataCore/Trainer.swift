#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Local-training hyperparameters.
public struct TrainingConfig: Sendable, Hashable, Codable {
    public var learningRate: Float
    public var batchSize: Int
    /// Local epochs.
    public var epochs: Int
    public var seed: UInt64
    /// FedProx/FedAsync proximal coefficient: adds (mu/2)·||x − x_start||² to the local objective.
    public var proximalMu: Float

    public init(learningRate: Float = 0.01, batchSize: Int = 10, epochs: Int = 1, seed: UInt64 = 0, proximalMu: Float = 0) {
        self.learningRate = learningRate
        self.batchSize = batchSize
        self.epochs = epochs
        self.seed = seed
        self.proximalMu = proximalMu
    }
}

public struct TrainingResult: Sendable {
    public var parameters: [Float]
    /// Mean per-sample data loss over every sample visited in every epoch, each measured with the parameters
    /// in force when its batch was processed (the proximal term is not included).
    public var meanLoss: Float
    /// Number of local samples (`data.count`, not multiplied by epochs): the `n_i` used for weighting.
    public var sampleCount: Int
    /// SGD steps taken (batches over all epochs).
    public var steps: Int

    public init(parameters: [Float], meanLoss: Float, sampleCount: Int, steps: Int) {
        self.parameters = parameters
        self.meanLoss = meanLoss
        self.sampleCount = sampleCount
        self.steps = steps
    }
}

public struct Evaluation: Sendable, Hashable {
    public var sampleCount: Int
    /// Mean loss: cross-entropy for softmax, 0.5·(ŷ − y)² for linear.
    public var loss: Float
    /// Softmax: fraction of samples whose argmax logit equals the label. Linear: 0.
    public var accuracy: Float
    /// Linear: mean of (ŷ − y)². Softmax: 0.
    public var meanSquaredError: Float
    /// Σ ℓ_i² over the rows, ℓ_i the row's loss (`loss` is their mean): with it the coordinator knows the
    /// loss's standard error (update option 5). Nil when the evaluation did not see the rows' losses.
    public var lossSquares: Double?

    public init(sampleCount: Int, loss: Float, accuracy: Float, meanSquaredError: Float, lossSquares: Double? = nil) {
        self.sampleCount = sampleCount
        self.loss = loss
        self.accuracy = accuracy
        self.meanSquaredError = meanSquaredError
        self.lossSquares = lossSquares
    }
}

public enum Trainer {
    /// Mini-batch SGD, deterministic for `config.seed`: each epoch shuffles sample indices with a
    /// `SeededGenerator` seeded from (seed, epoch), takes batches of `batchSize` (the last one smaller),
    /// and steps along the mean gradient of the batch (plus mu·(x − x_start) when `proximalMu` > 0).
    ///
    /// Internally the weights are kept class-major (W transposed, o x f) so that the per-sample work is
    /// dot products and axpys of length featureCount; the result is returned in the public row-major layout.
    public static func train(spec: ModelSpec, parameters: [Float], data: Dataset, config: TrainingConfig) -> TrainingResult {
        checkShapes(spec: spec, parameters: parameters, data: data)
        if let mlp = spec.mlp { return mlp.train(parameters: parameters, data: data, config: config) }
        precondition(config.batchSize >= 1, "batchSize must be >= 1")
        precondition(config.epochs >= 0, "epochs must be >= 0")
        let n = data.count
        guard n > 0, config.epochs > 0 else {
            return TrainingResult(parameters: parameters, meanLoss: 0, sampleCount: n, steps: 0)
        }
        let pc = spec.parameterCount
        var params = classMajor(parameters, spec: spec)
        let start = config.proximalMu != 0 ? params : []
        var gradient = [Float](repeating: 0, count: pc)
        var scratch = [Float](repeating: 0, count: spec.outputCount)
        var order = [Int](repeating: 0, count: n)
        var lossSum = 0.0
        var steps = 0
        let lr = config.learningRate
        let mu = config.proximalMu

        params.withUnsafeMutableBufferPointer { p in
        gradient.withUnsafeMutableBufferPointer { g in
        scratch.withUnsafeMutableBufferPointer { s in
        order.withUnsafeMutableBufferPointer { ord in
        data.features.withUnsafeBufferPointer { x in
        data.labels.withUnsafeBufferPointer { y in
        start.withUnsafeBufferPointer { x0 in
            // Raw pointers in locals: the per-batch loops below then vectorise instead of reloading the
            // buffers' base addresses on every element (pc >= 1: outputCount >= 1).
            let pp = p.baseAddress!, gp = g.baseAddress!
            for epoch in 0..<config.epochs {
                var rng = SeededGenerator(seed: deriveSeed(config.seed, UInt64(epoch)))
                for i in 0..<n { ord[i] = i }
                shuffleIndices(ord, using: &rng)
                var b = 0
                while b < n {
                    let end = min(b + config.batchSize, n)
                    let batch = UnsafeBufferPointer(rebasing: ord[b..<end])
                    gp.update(repeating: 0, count: pc)
                    lossSum += accumulate(spec: spec, params: UnsafeBufferPointer(p), features: x, labels: y,
                                          indices: batch, gradient: g, scratch: s)
                    let scale = 1 / Float(end - b)
                    if mu != 0 {
                        let x0p = x0.baseAddress!
                        for k in 0..<pc { pp[k] -= lr * (gp[k] * scale + mu * (pp[k] - x0p[k])) }
                    } else {
                        // p − step·g, computed as p + (−step)·g: the same value bit for bit.
                        axpy(pc, -(lr * scale), UnsafePointer(gp), pp)
                    }
                    steps += 1
                    b = end
                }
            }
        }}}}}}}
        let meanLoss = Float(lossSum / Double(n * config.epochs))
        return TrainingResult(parameters: rowMajor(params, spec: spec), meanLoss: meanLoss, sampleCount: n, steps: steps)
    }

    /// The order in which `train` visits the samples in epoch `epoch` (a permutation of 0..<count): batches
    /// are consecutive runs of it. Lets an independent implementation replay the same minibatches.
    public static func sampleOrder(count: Int, seed: UInt64, epoch: Int) -> [Int] {
        precondition(count >= 0 && epoch >= 0, "count and epoch must be >= 0")
        var order = Array(0..<count)
        var rng = SeededGenerator(seed: deriveSeed(seed, UInt64(epoch)))
        order.withUnsafeMutableBufferPointer { shuffleIndices($0, using: &rng) }
        return order
    }

    /// Mean loss, accuracy (softmax) and mean squared error (linear) over the whole dataset.
    public static func evaluate(spec: ModelSpec, parameters: [Float], data: Dataset) -> Evaluation {
        checkShapes(spec: spec, parameters: parameters, data: data)
        if let mlp = spec.mlp { return mlp.evaluate(parameters: parameters, data: data) }
        let n = data.count
        guard n > 0 else { return Evaluation(sampleCount: 0, loss: 0, accuracy: 0, meanSquaredError: 0) }
        let f = spec.featureCount, o = spec.outputCount
        let cm = classMajor(parameters, spec: spec)
        var scratch = [Float](repeating: 0, count: o)
        var lossSum = 0.0, sqSum = 0.0, lossSquares = 0.0
        var correct = 0
        cm.withUnsafeBufferPointer { w in
        scratch.withUnsafeMutableBufferPointer { z in
        data.features.withUnsafeBufferPointer { x in
        data.labels.withUnsafeBufferPointer { y in
            let zp = z.baseAddress!
            let xp = x.baseAddress ?? UnsafePointer(zp)   // featureCount 0: no feature storage
            for i in 0..<n {
                let row = xp + i * f
                logits(row: row, weights: w.baseAddress!, featureCount: f, outputCount: o, into: zp)
                switch spec.kind {
                case .mlp, .custom:
                    preconditionFailure("an MLP is trained by MLP (delegated above); a custom model by its owner's trainer")
                case .softmaxRegression:
                    let label = classIndex(y[i], outputCount: o)
                    var m = zp[0], arg = 0
                    for k in 1..<o where zp[k] > m { m = zp[k]; arg = k }
                    var s: Float = 0
                    for k in 0..<o { s += exp(zp[k] - m) }
                    let loss = Double(log(s) - (zp[label] - m))
                    lossSum += loss
                    lossSquares += loss * loss
                    if arg == label { correct += 1 }
                case .linearRegression:
                    let r = Double(zp[0] - y[i])
                    sqSum += r * r
                    let loss = 0.5 * r * r
                    lossSquares += loss * loss
                }
            }
        }}}}
        switch spec.kind {
        case .mlp, .custom:
            preconditionFailure("an MLP is trained by MLP (delegated above); a custom model by its owner's trainer")
        case .softmaxRegression:
            return Evaluation(sampleCount: n, loss: Float(lossSum / Double(n)),
                              accuracy: Float(Double(correct) / Double(n)), meanSquaredError: 0, lossSquares: lossSquares)
        case .linearRegression:
            let mse = sqSum / Double(n)
            return Evaluation(sampleCount: n, loss: Float(0.5 * mse), accuracy: 0, meanSquaredError: Float(mse), lossSquares: lossSquares)
        }
    }

    /// Mean loss and its gradient over the given sample indices (exposed for numeric gradient checks).
    /// Empty `indices` give (0, zeros). No proximal term. The gradient uses the public row-major layout.
    public static func lossAndGradient(spec: ModelSpec, parameters: [Float], data: Dataset, indices: some Collection<Int>) -> (loss: Float, gradient: [Float]) {
        checkShapes(spec: spec, parameters: parameters, data: data)
        if let mlp = spec.mlp { return mlp.lossAndGradient(parameters: parameters, data: data, indices: Array(indices)) }
        let idx = Array(indices)
        for i in idx { precondition(i >= 0 && i < data.count, "index \(i) out of range 0..<\(data.count)") }
        var gradient = [Float](repeating: 0, count: spec.parameterCount)
        guard !idx.isEmpty else { return (0, gradient) }
        let cm = classMajor(parameters, spec: spec)
        var scratch = [Float](repeating: 0, count: spec.outputCount)
        let lossSum = cm.withUnsafeBufferPointer { w in
            gradient.withUnsafeMutableBufferPointer { g in
            scratch.withUnsafeMutableBufferPointer { s in
            data.features.withUnsafeBufferPointer { x in
            data.labels.withUnsafeBufferPointer { y in
            idx.withUnsafeBufferPointer { ib in
                accumulate(spec: spec, params: w, features: x, labels: y, indices: ib, gradient: g, scratch: s)
            }}}}}
        }
        let scale = 1 / Float(idx.count)
        for k in gradient.indices { gradient[k] *= scale }
        return (Float(lossSum / Double(idx.count)), rowMajor(gradient, spec: spec))
    }

    // MARK: - Layout

    /// Public layout [W row-major f x o, b] -> internal [W^T row-major o x f, b].
    static func classMajor(_ v: [Float], spec: ModelSpec) -> [Float] {
        let f = spec.featureCount, o = spec.outputCount
        if o == 1 { return v }
        var out = v
        for j in 0..<f { for k in 0..<o { out[k * f + j] = v[j * o + k] } }
        return out
    }

    /// Inverse of `classMajor`.
    static func rowMajor(_ v: [Float], spec: ModelSpec) -> [Float] {
        let f = spec.featureCount, o = spec.outputCount
        if o == 1 { return v }
        var out = v
        for j in 0..<f { for k in 0..<o { out[j * o + k] = v[k * f + j] } }
        return out
    }

    // MARK: - Kernels

    private static func checkShapes(spec: ModelSpec, parameters: [Float], data: Dataset) {
        precondition(spec.kind != .custom, "a custom model is trained by its owner's trainer, not by Trainer")
        precondition(parameters.count == spec.parameterCount,
                     "parameters.count \(parameters.count) != spec.parameterCount \(spec.parameterCount)")
        precondition(data.featureCount == spec.featureCount,
                     "data.featureCount \(data.featureCount) != spec.featureCount \(spec.featureCount)")
    }

    /// Fisher-Yates with `nextInt(below:)` — the same sequence as `SeededGenerator.shuffle`, non-generic.
    @inline(__always)
    private static func shuffleIndices(_ a: UnsafeMutableBufferPointer<Int>, using rng: inout SeededGenerator) {
        var i = a.count - 1
        while i > 0 {
            let j = rng.nextInt(below: i + 1)
            let t = a[i]; a[i] = a[j]; a[j] = t
            i -= 1
        }
    }

    @inline(__always)
    static func classIndex(_ label: Float, outputCount: Int) -> Int {
        precondition(label >= 0 && label < Float(outputCount) && label == label.rounded(.towardZero),
                     "softmax label \(label) is not a class index in 0..<\(outputCount)")
        return Int(label)
    }

    /// Σ a[k]·b[k] with an 8-lane accumulator (fixed summation order, so results are deterministic).
    @inline(__always)
    private static func dot(_ n: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>) -> Float {
        var acc = SIMD8<Float>()
        var k = 0
        while k &+ 8 <= n {
            acc += UnsafeRawPointer(a + k).loadUnaligned(as: SIMD8<Float>.self)
                 * UnsafeRawPointer(b + k).loadUnaligned(as: SIMD8<Float>.self)
            k &+= 8
        }
        var s = acc.sum()
        while k < n {
            s += a[k] * b[k]
            k &+= 1
        }
        return s
    }

    /// y[0..<n] += a · x[0..<n]
    @inline(__always)
    private static func axpy(_ n: Int, _ a: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        let av = SIMD8<Float>(repeating: a)
        var k = 0
        while k &+ 8 <= n {
            let xv = UnsafeRawPointer(x + k).loadUnaligned(as: SIMD8<Float>.self)
            let yv = UnsafeRawPointer(y + k).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(y + k).storeBytes(of: yv + av * xv, as: SIMD8<Float>.self)
            k &+= 8
        }
        while k < n {
            y[k] += a * x[k]
            k &+= 1
        }
    }

    /// (Σ x[k]·a[k], Σ x[k]·b[k]) in one pass over x; each sum in exactly `dot`'s order (same results).
    @inline(__always)
    private static func dot2(_ n: Int, _ x: UnsafePointer<Float>, _ a: UnsafePointer<Float>,
                             _ b: UnsafePointer<Float>) -> (Float, Float) {
        var accA = SIMD8<Float>(), accB = SIMD8<Float>()
        var k = 0
        while k &+ 8 <= n {
            let xv = UnsafeRawPointer(x + k).loadUnaligned(as: SIMD8<Float>.self)
            accA += xv * UnsafeRawPointer(a + k).loadUnaligned(as: SIMD8<Float>.self)
            accB += xv * UnsafeRawPointer(b + k).loadUnaligned(as: SIMD8<Float>.self)
            k &+= 8
        }
        var sA = accA.sum(), sB = accB.sum()
        while k < n {
            sA += x[k] * a[k]
            sB += x[k] * b[k]
            k &+= 1
        }
        return (sA, sB)
    }

    /// ya += a·x and yb += b·x in one pass over x; each element computed exactly as by `axpy`.
    @inline(__always)
    private static func axpy2(_ n: Int, _ a: Float, _ b: Float, _ x: UnsafePointer<Float>,
                              _ ya: UnsafeMutablePointer<Float>, _ yb: UnsafeMutablePointer<Float>) {
        let av = SIMD8<Float>(repeating: a), bv = SIMD8<Float>(repeating: b)
        var k = 0
        while k &+ 8 <= n {
            let xv = UnsafeRawPointer(x + k).loadUnaligned(as: SIMD8<Float>.self)
            let yav = UnsafeRawPointer(ya + k).loadUnaligned(as: SIMD8<Float>.self)
            let ybv = UnsafeRawPointer(yb + k).loadUnaligned(as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(ya + k).storeBytes(of: yav + av * xv, as: SIMD8<Float>.self)
            UnsafeMutableRawPointer(yb + k).storeBytes(of: ybv + bv * xv, as: SIMD8<Float>.self)
            k &+= 8
        }
        while k < n {
            ya[k] += a * x[k]
            yb[k] += b * x[k]
            k &+= 1
        }
    }

    /// z[k] = b[k] + Σ_j x_j · W[j, k], with W stored class-major (row k of W^T is contiguous). Two classes
    /// per pass over the row, so the row is loaded once for both.
    @inline(__always)
    static func logits(row: UnsafePointer<Float>, weights w: UnsafePointer<Float>,
                               featureCount f: Int, outputCount o: Int, into z: UnsafeMutablePointer<Float>) {
        let bias = w + f * o
        var k = 0
        while k &+ 2 <= o {
            let (d0, d1) = dot2(f, row, w + k * f, w + (k &+ 1) * f)
            z[k] = bias[k] + d0
            z[k &+ 1] = bias[k &+ 1] + d1
            k &+= 2
        }
        if k < o { z[k] = bias[k] + dot(f, row, w + k * f) }
    }

    /// Adds the per-sample gradients (unscaled sum, class-major layout) of the given samples into
    /// `gradient` and returns the summed loss. `params` are class-major; `scratch` holds outputCount floats.
    private static func accumulate(spec: ModelSpec, params w: UnsafeBufferPointer<Float>,
                                   features x: UnsafeBufferPointer<Float>, labels y: UnsafeBufferPointer<Float>,
                                   indices: UnsafeBufferPointer<Int>, gradient g: UnsafeMutableBufferPointer<Float>,
                                   scratch: UnsafeMutableBufferPointer<Float>) -> Double {
        let f = spec.featureCount, o = spec.outputCount, bo = spec.biasOffset
        guard let wp = w.baseAddress, let gp = g.baseAddress, let zp = scratch.baseAddress else { return 0 }
        // A dataset with featureCount 0 may have no feature storage at all; any valid pointer will do then.
        let xp = x.baseAddress ?? UnsafePointer(zp)
        var lossSum = 0.0
        switch spec.kind {
        case .mlp, .custom:
            preconditionFailure("an MLP is trained by MLP (delegated above); a custom model by its owner's trainer")
        case .softmaxRegression:
            for i in indices {
                let row = xp + i * f
                logits(row: row, weights: wp, featureCount: f, outputCount: o, into: zp)
                let label = classIndex(y[i], outputCount: o)
                var m = zp[0]
                for k in 1..<o { m = max(m, zp[k]) }
                let zy = zp[label] - m
                var s: Float = 0
                for k in 0..<o {
                    let e = exp(zp[k] - m)
                    zp[k] = e
                    s += e
                }
                // loss = log Σ_k exp(z_k) − z_y = log s − (z_y − m), with s = Σ_k exp(z_k − m) >= 1
                lossSum += Double(log(s) - zy)
                let inv = 1 / s
                for k in 0..<o { zp[k] *= inv }      // z now holds p = softmax(z)
                zp[label] -= 1                        // dL/dz = p − onehot(y)
                // dL/dW[:, k] += x · dz_k, two classes per pass over the row; dL/db_k += dz_k
                var k = 0
                while k &+ 2 <= o {
                    axpy2(f, zp[k], zp[k &+ 1], row, gp + k * f, gp + (k &+ 1) * f)
                    k &+= 2
                }
                if k < o { axpy(f, zp[k], row, gp + k * f) }
                for k in 0..<o { gp[bo + k] += zp[k] }
            }
        case .linearRegression:
            for i in indices {
                let row = xp + i * f
                let r = wp[bo] + dot(f, row, wp) - y[i]
                lossSum += Double(0.5 * r * r)
                axpy(f, r, row, gp)
                gp[bo] += r
            }
        }
        return lossSum
    }
}
