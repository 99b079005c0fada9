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

    public init(sampleCount: Int, loss: Float, accuracy: Float, meanSquaredError: Float) {
        self.sampleCount = sampleCount
        self.loss = loss
        self.accuracy = accuracy
        self.meanSquaredError = meanSquaredError
    }
}

public enum Trainer {
    /// Mini-batch SGD, deterministic for `config.seed`: each epoch shuffles sample indices with a
    /// `SeededGenerator` seeded from (seed, epoch), takes batches of `batchSize` (the last one smaller),
    /// and steps along the mean gradient of the batch (plus mu·(x − x_start) when `proximalMu` > 0).
    public static func train(spec: ModelSpec, parameters: [Float], data: Dataset, config: TrainingConfig) -> TrainingResult {
        checkShapes(spec: spec, parameters: parameters, data: data)
        precondition(config.batchSize >= 1, "batchSize must be >= 1")
        precondition(config.epochs >= 0, "epochs must be >= 0")
        let n = data.count
        var params = parameters
        guard n > 0, config.epochs > 0 else {
            return TrainingResult(parameters: params, meanLoss: 0, sampleCount: n, steps: 0)
        }
        let pc = spec.parameterCount
        var gradient = [Float](repeating: 0, count: pc)
        var scratch = [Float](repeating: 0, count: 2 * spec.outputCount)
        var order = Array(0..<n)
        var lossSum = 0.0
        var steps = 0
        let lr = config.learningRate
        let mu = config.proximalMu
        let start = parameters

        params.withUnsafeMutableBufferPointer { p in
        gradient.withUnsafeMutableBufferPointer { g in
        scratch.withUnsafeMutableBufferPointer { s in
        data.features.withUnsafeBufferPointer { x in
        data.labels.withUnsafeBufferPointer { y in
        start.withUnsafeBufferPointer { x0 in
            for epoch in 0..<config.epochs {
                var rng = SeededGenerator(seed: deriveSeed(config.seed, UInt64(epoch)))
                for i in 0..<n { order[i] = i }
                rng.shuffle(&order)
                order.withUnsafeBufferPointer { ord in
                    var b = 0
                    while b < n {
                        let end = min(b + config.batchSize, n)
                        let batch = UnsafeBufferPointer(rebasing: ord[b..<end])
                        for k in 0..<pc { g[k] = 0 }
                        lossSum += accumulate(spec: spec, params: UnsafeBufferPointer(p), features: x, labels: y,
                                              indices: batch, gradient: g, scratch: s)
                        let scale = 1 / Float(end - b)
                        if mu != 0 {
                            for k in 0..<pc { p[k] -= lr * (g[k] * scale + mu * (p[k] - x0[k])) }
                        } else {
                            let step = lr * scale
                            for k in 0..<pc { p[k] -= step * g[k] }
                        }
                        steps += 1
                        b = end
                    }
                }
            }
        }}}}}}
        let meanLoss = Float(lossSum / Double(n * config.epochs))
        return TrainingResult(parameters: params, meanLoss: meanLoss, sampleCount: n, steps: steps)
    }

    /// Mean loss, accuracy (softmax) and mean squared error (linear) over the whole dataset.
    public static func evaluate(spec: ModelSpec, parameters: [Float], data: Dataset) -> Evaluation {
        checkShapes(spec: spec, parameters: parameters, data: data)
        let n = data.count
        guard n > 0 else { return Evaluation(sampleCount: 0, loss: 0, accuracy: 0, meanSquaredError: 0) }
        let f = spec.featureCount, o = spec.outputCount, bo = spec.biasOffset
        var scratch = [Float](repeating: 0, count: o)
        var lossSum = 0.0, sqSum = 0.0
        var correct = 0
        parameters.withUnsafeBufferPointer { w in
        scratch.withUnsafeMutableBufferPointer { z in
        data.features.withUnsafeBufferPointer { x in
        data.labels.withUnsafeBufferPointer { y in
            for i in 0..<n {
                let row = UnsafeBufferPointer(rebasing: x[(i * f)..<((i + 1) * f)])
                logits(row: row, weights: w, biasOffset: bo, featureCount: f, outputCount: o, into: z)
                switch spec.kind {
                case .softmaxRegression:
                    let label = classIndex(y[i], outputCount: o)
                    var m = z[0], arg = 0
                    for k in 1..<o where z[k] > m { m = z[k]; arg = k }
                    var s: Float = 0
                    for k in 0..<o { s += exp(z[k] - m) }
                    lossSum += Double(m + log(s) - z[label])
                    if arg == label { correct += 1 }
                case .linearRegression:
                    let r = Double(z[0] - y[i])
                    sqSum += r * r
                }
            }
        }}}}
        switch spec.kind {
        case .softmaxRegression:
            return Evaluation(sampleCount: n, loss: Float(lossSum / Double(n)),
                              accuracy: Float(Double(correct) / Double(n)), meanSquaredError: 0)
        case .linearRegression:
            let mse = sqSum / Double(n)
            return Evaluation(sampleCount: n, loss: Float(0.5 * mse), accuracy: 0, meanSquaredError: Float(mse))
        }
    }

    /// Mean loss and its gradient over the given sample indices (exposed for numeric gradient checks).
    /// Empty `indices` give (0, zeros). No proximal term.
    public static func lossAndGradient(spec: ModelSpec, parameters: [Float], data: Dataset, indices: some Collection<Int>) -> (loss: Float, gradient: [Float]) {
        checkShapes(spec: spec, parameters: parameters, data: data)
        let idx = Array(indices)
        for i in idx { precondition(i >= 0 && i < data.count, "index \(i) out of range 0..<\(data.count)") }
        var gradient = [Float](repeating: 0, count: spec.parameterCount)
        guard !idx.isEmpty else { return (0, gradient) }
        var scratch = [Float](repeating: 0, count: 2 * spec.outputCount)
        let lossSum = parameters.withUnsafeBufferPointer { w in
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
        return (Float(lossSum / Double(idx.count)), gradient)
    }

    // MARK: - Kernels

    private static func checkShapes(spec: ModelSpec, parameters: [Float], data: Dataset) {
        precondition(parameters.count == spec.parameterCount,
                     "parameters.count \(parameters.count) != spec.parameterCount \(spec.parameterCount)")
        precondition(data.featureCount == spec.featureCount,
                     "data.featureCount \(data.featureCount) != spec.featureCount \(spec.featureCount)")
    }

    @inline(__always)
    private static func classIndex(_ label: Float, outputCount: Int) -> Int {
        precondition(label >= 0 && label < Float(outputCount) && label == label.rounded(.towardZero),
                     "softmax label \(label) is not a class index in 0..<\(outputCount)")
        return Int(label)
    }

    /// z = b + Σ_j x_j · W[j, :]
    @inline(__always)
    private static func logits(row: UnsafeBufferPointer<Float>, weights w: UnsafeBufferPointer<Float>, biasOffset bo: Int,
                               featureCount f: Int, outputCount o: Int, into z: UnsafeMutableBufferPointer<Float>) {
        let wp = w.baseAddress!, zp = z.baseAddress!
        for k in 0..<o { zp[k] = wp[bo + k] }
        for j in 0..<f {
            let xj = row[j]
            let wr = wp + j * o
            for k in 0..<o { zp[k] += xj * wr[k] }
        }
    }

    /// Adds the per-sample gradients (unscaled sum) of the given samples into `gradient` and returns the
    /// summed loss. `scratch` holds at least 2·outputCount floats.
    private static func accumulate(spec: ModelSpec, params w: UnsafeBufferPointer<Float>,
                                   features x: UnsafeBufferPointer<Float>, labels y: UnsafeBufferPointer<Float>,
                                   indices: UnsafeBufferPointer<Int>, gradient g: UnsafeMutableBufferPointer<Float>,
                                   scratch: UnsafeMutableBufferPointer<Float>) -> Double {
        let f = spec.featureCount, o = spec.outputCount, bo = spec.biasOffset
        let gp = g.baseAddress!
        let z = UnsafeMutableBufferPointer(rebasing: scratch[0..<o])
        let zp = z.baseAddress!
        let xp = x.baseAddress
        var lossSum = 0.0
        switch spec.kind {
        case .softmaxRegression:
            for i in indices {
                let row = UnsafeBufferPointer(start: xp.map { $0 + i * f }, count: f)
                logits(row: row, weights: w, biasOffset: bo, featureCount: f, outputCount: o, into: z)
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
                for j in 0..<f {
                    let xj = row[j]
                    let gr = gp + j * o
                    for k in 0..<o { gr[k] += xj * zp[k] }
                }
                let gb = gp + bo
                for k in 0..<o { gb[k] += zp[k] }
            }
        case .linearRegression:
            let wp = w.baseAddress!
            for i in indices {
                let row = UnsafeBufferPointer(start: xp.map { $0 + i * f }, count: f)
                var yhat = wp[bo]
                for j in 0..<f { yhat += row[j] * wp[j] }
                let r = yhat - y[i]
                lossSum += Double(0.5 * r * r)
                for j in 0..<f { gp[j] += r * row[j] }
                gp[bo] += r
            }
        }
        return lossSum
    }
}
