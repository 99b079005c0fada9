import Foundation

/// A multilayer perceptron: `featureCount → hidden[0] → … → outputCount`, fully connected, a nonlinearity
/// after every hidden layer, and the output read as softmax classes (cross-entropy) or, with one output, a
/// regression target (half the squared error, as `ModelKind.linearRegression`). The model a data owner without
/// Python gets when the classes are not linearly separable.
///
/// Parameters are one flat `[Float]`, layer by layer: `layer1.weight` (in × out, row-major), `layer1.bias`
/// (out), `layer2.weight`, … — the tensors and order `tensorShapes` names. Training is `Trainer.train`'s SGD
/// exactly (the same per-epoch sample order, batches, mean gradient, proximal term, mean loss), so a
/// federation mixes it with nothing new; docs/ALGORITHMS.md, "Multilayer perceptron".
public struct MLP: Hashable, Sendable, Codable {
    public enum Activation: String, Hashable, Sendable, Codable, CaseIterable {
        /// max(0, z); weights drawn He-uniform, ±√(6 / fan-in).
        case relu
        /// tanh(z); weights drawn Glorot-uniform, ±√(6 / (fan-in + fan-out)).
        case tanh
    }

    public enum Output: String, Hashable, Sendable, Codable {
        /// Softmax over `outputCount` classes, cross-entropy loss; labels are class indices.
        case classes
        /// One output, loss ½(ŷ − y)²; labels are targets.
        case regression
    }

    public var featureCount: Int
    public var hidden: [Int]
    public var outputCount: Int
    public var activation: Activation
    public var output: Output

    /// The largest layer width and depth accepted (a coordinator's flag, a wire value): a bound, not a limit of
    /// the arithmetic.
    public static let maxWidth = 65_536, maxHiddenLayers = 16

    public init(featureCount: Int, hidden: [Int], outputCount: Int, activation: Activation = .relu, output: Output = .classes) {
        precondition(featureCount >= 1 && hidden.count <= Self.maxHiddenLayers && hidden.allSatisfy { (1...Self.maxWidth).contains($0) },
                     "invalid MLP shape")
        precondition(output == .regression ? outputCount == 1 : outputCount >= 2, "classes need 2+ outputs, regression exactly 1")
        self.featureCount = featureCount
        self.hidden = hidden
        self.outputCount = outputCount
        self.activation = activation
        self.output = output
    }

    /// Widths of every layer, input first: [f, h₁, …, o].
    public var widths: [Int] { [featureCount] + hidden + [outputCount] }

    public var tensorShapes: [(name: String, shape: [Int])] {
        let w = widths
        return (1..<w.count).flatMap { l in [("layer\(l).weight", [w[l - 1], w[l]]), ("layer\(l).bias", [w[l]])] }
    }

    public var parameterCount: Int {
        let w = widths
        return (1..<w.count).reduce(0) { $0 + w[$1 - 1] * w[$1] + w[$1] }
    }

    /// Deterministic for `seed`: weights uniform in ±limit (He for relu, Glorot for tanh), biases zero.
    /// Zero weights would leave every hidden unit of a layer identical for ever.
    public func initialParameters(seed: UInt64) -> [Float] {
        var rng = SeededGenerator(seed: seed)
        var parameters: [Float] = []
        parameters.reserveCapacity(parameterCount)
        let w = widths
        for l in 1..<w.count {
            let fanIn = Double(w[l - 1]), fanOut = Double(w[l])
            let limit = activation == .relu ? (6 / fanIn).squareRoot() : (6 / (fanIn + fanOut)).squareRoot()
            for _ in 0..<(w[l - 1] * w[l]) { parameters.append(Float((rng.nextUniform() * 2 - 1) * limit)) }
            parameters.append(contentsOf: repeatElement(0, count: w[l]))
        }
        return parameters
    }

    // MARK: Training

    /// Mini-batch SGD with `Trainer.train`'s semantics: epoch e visits the samples in
    /// `Trainer.sampleOrder(count:seed:epoch:)`, batches of `batchSize` (the last smaller), each step
    /// `x ← x − lr · (mean gradient of the batch + mu · (x − x_start))`; `meanLoss` is the mean of every
    /// sample's loss at the parameters its batch started from.
    public func train(parameters: [Float], data: Dataset, config: TrainingConfig) -> TrainingResult {
        precondition(parameters.count == parameterCount && data.featureCount == featureCount, "shape mismatch")
        precondition(config.batchSize >= 1 && config.epochs >= 0, "invalid training configuration")
        let n = data.count
        guard n > 0, config.epochs > 0 else { return TrainingResult(parameters: parameters, meanLoss: 0, sampleCount: n, steps: 0) }
        var params = parameters
        let start = parameters
        var workspace = Workspace(model: self, batch: min(config.batchSize, n))
        var lossSum = 0.0
        var steps = 0
        for epoch in 0..<config.epochs {
            let order = Trainer.sampleOrder(count: n, seed: config.seed, epoch: epoch)
            var b = 0
            while b < n {
                let end = min(b + config.batchSize, n)
                lossSum += batchGradient(params, data: data, indices: order[b..<end], workspace: &workspace)
                let scale = 1 / Float(end - b), lr = config.learningRate, mu = config.proximalMu
                for k in 0..<params.count {
                    params[k] -= lr * (workspace.gradient[k] * scale + (mu != 0 ? mu * (params[k] - start[k]) : 0))
                }
                steps += 1
                b = end
            }
        }
        return TrainingResult(parameters: params, meanLoss: Float(lossSum / Double(n * config.epochs)), sampleCount: n, steps: steps)
    }

    /// Mean loss and its gradient over `indices` (for gradient checks); empty indices give (0, zeros).
    public func lossAndGradient(parameters: [Float], data: Dataset, indices: [Int]) -> (loss: Float, gradient: [Float]) {
        guard !indices.isEmpty else { return (0, [Float](repeating: 0, count: parameterCount)) }
        var workspace = Workspace(model: self, batch: indices.count)
        let loss = batchGradient(parameters, data: data, indices: indices[...], workspace: &workspace)
        let scale = 1 / Float(indices.count)
        return (Float(loss) * scale, workspace.gradient.map { $0 * scale })
    }

    /// Loss, accuracy (classes) and mean squared error (regression) over the whole dataset.
    public func evaluate(parameters: [Float], data: Dataset) -> Evaluation {
        let n = data.count
        guard n > 0 else { return Evaluation(sampleCount: 0, loss: 0, accuracy: 0, meanSquaredError: 0) }
        var workspace = Workspace(model: self, batch: min(n, 256))
        var lossSum = 0.0, squares = 0.0, lossSquares = 0.0
        var correct = 0
        var b = 0
        while b < n {
            let end = min(b + 256, n)
            forward(parameters, data: data, indices: Array(b..<end)[...], workspace: &workspace)
            let o = outputCount, out = workspace.layer(widths.count - 1, rows: end - b, width: o)
            for (r, i) in (b..<end).enumerated() {
                let z = out[(r * o)..<((r + 1) * o)]
                switch output {
                case .classes:
                    let label = Self.classIndex(data.labels[i], outputCount: o)
                    let m = z.max()!
                    let logSum = log(z.reduce(Float(0)) { $0 + exp($1 - m) })
                    let loss = Double(logSum - (z[z.startIndex + label] - m))
                    lossSum += loss
                    lossSquares += loss * loss
                    if z.firstIndex(of: m)! - z.startIndex == label { correct += 1 }
                case .regression:
                    let residual = Double(z[z.startIndex] - data.labels[i])
                    squares += residual * residual
                    let loss = 0.5 * residual * residual
                    lossSquares += loss * loss
                }
            }
            b = end
        }
        switch output {
        case .classes: return Evaluation(sampleCount: n, loss: Float(lossSum / Double(n)), accuracy: Float(Double(correct) / Double(n)), meanSquaredError: 0,
                                         lossSquares: lossSquares)
        case .regression: return Evaluation(sampleCount: n, loss: Float(0.5 * squares / Double(n)), accuracy: 0, meanSquaredError: Float(squares / Double(n)),
                                            lossSquares: lossSquares)
        }
    }

    /// The output layer's values (logits; the prediction for regression) of every row, row-major (count × outputCount).
    public func outputs(parameters: [Float], data: Dataset) -> [Float] {
        var result: [Float] = []
        result.reserveCapacity(data.count * outputCount)
        var workspace = Workspace(model: self, batch: min(max(data.count, 1), 256))
        var b = 0
        while b < data.count {
            let end = min(b + 256, data.count)
            forward(parameters, data: data, indices: Array(b..<end)[...], workspace: &workspace)
            result.append(contentsOf: workspace.layer(widths.count - 1, rows: end - b, width: outputCount))
            b = end
        }
        return result
    }

    // MARK: Arithmetic

    /// Per-batch buffers, reused across batches: every layer's activations and their gradients, each flat
    /// (one array, layer l at `offsets[l]`, batch × widths[l] row-major) so the loops below run on raw pointers.
    struct Workspace {
        var activations: [Float]     // layer 0: the inputs; the last layer: the output's logits
        var deltas: [Float]          // d(loss)/d(pre-activation) of each layer
        var gradient: [Float]
        let offsets: [Int]
        let batch: Int

        init(model: MLP, batch: Int) {
            var offsets: [Int] = [], total = 0
            for width in model.widths { offsets.append(total); total += batch * width }
            self.offsets = offsets
            self.batch = batch
            activations = [Float](repeating: 0, count: total)
            deltas = activations
            gradient = [Float](repeating: 0, count: model.parameterCount)
        }

        /// Layer l's activations for the first `rows` rows.
        func layer(_ l: Int, rows: Int, width: Int) -> [Float] { Array(activations[offsets[l]..<(offsets[l] + rows * width)]) }
    }

    /// Offsets of each layer's weight and bias in the flat parameter vector.
    private var offsets: [(weight: Int, bias: Int)] {
        let w = widths
        var result: [(Int, Int)] = []
        var at = 0
        for l in 1..<w.count {
            result.append((at, at + w[l - 1] * w[l]))
            at += w[l - 1] * w[l] + w[l]
        }
        return result
    }

    /// Fills `workspace.activations` for the rows `indices`: hidden layers activated, the last left as logits.
    /// Each output row is its bias plus Σ_j a_j · W[j, :] in j order: contiguous rows of W, the same sums (in
    /// the same order) as the textbook loop.
    private func forward(_ p: [Float], data: Dataset, indices: ArraySlice<Int>, workspace: inout Workspace) {
        let w = widths, f = featureCount, layers = offsets, offs = workspace.offsets
        let relu = activation == .relu
        p.withUnsafeBufferPointer { pb in
        data.features.withUnsafeBufferPointer { xb in
        workspace.activations.withUnsafeMutableBufferPointer { ab in
            guard let pp = pb.baseAddress, let ap = ab.baseAddress else { return }
            for (r, i) in indices.enumerated() {
                for j in 0..<f { ap[r * f + j] = xb[i * f + j] }
            }
            for (l, offset) in layers.enumerated() {
                let input = w[l], out = w[l + 1], last = l == w.count - 2
                let a = ap + offs[l], z = ap + offs[l + 1]
                for r in 0..<indices.count {
                    let zr = z + r * out, ar = a + r * input
                    for k in 0..<out { zr[k] = pp[offset.bias + k] }
                    for j in 0..<input {
                        let x = ar[j]
                        let row = pp + offset.weight + j * out
                        for k in 0..<out { zr[k] += x * row[k] }
                    }
                    if !last {
                        for k in 0..<out { zr[k] = relu ? max(0, zr[k]) : Foundation.tanh(zr[k]) }
                    }
                }
            }
        }}}
    }

    /// Adds the gradient of the summed loss over `indices` to a zeroed `workspace.gradient`; returns the summed loss.
    private func batchGradient(_ p: [Float], data: Dataset, indices: ArraySlice<Int>, workspace: inout Workspace) -> Double {
        forward(p, data: data, indices: indices, workspace: &workspace)
        let w = widths, rows = indices.count, top = w.count - 1, o = outputCount, layers = offsets, offs = workspace.offsets
        let relu = activation == .relu, classes = output == .classes
        var loss = 0.0
        p.withUnsafeBufferPointer { pb in
        data.labels.withUnsafeBufferPointer { yb in
        workspace.activations.withUnsafeBufferPointer { ab in
        workspace.deltas.withUnsafeMutableBufferPointer { db in
        workspace.gradient.withUnsafeMutableBufferPointer { gb in
            guard let pp = pb.baseAddress, let ap = ab.baseAddress, let dp = db.baseAddress, let gp = gb.baseAddress else { return }
            gp.update(repeating: 0, count: gb.count)
            let z = ap + offs[top], dz = dp + offs[top]
            for (r, i) in indices.enumerated() {
                let zr = z + r * o, dr = dz + r * o
                if classes {
                    let label = Self.classIndex(yb[i], outputCount: o)
                    var m = zr[0]
                    for k in 1..<o { m = max(m, zr[k]) }
                    var s: Float = 0
                    for k in 0..<o { s += exp(zr[k] - m) }
                    loss += Double(log(s) - (zr[label] - m))
                    for k in 0..<o { dr[k] = exp(zr[k] - m) / s - (k == label ? 1 : 0) }
                } else {
                    let residual = zr[0] - yb[i]
                    loss += 0.5 * Double(residual) * Double(residual)
                    dr[0] = residual
                }
            }
            for (l, offset) in layers.enumerated().reversed() {
                let input = w[l], out = w[l + 1]
                let a = ap + offs[l], d = dp + offs[l + 1], below = dp + offs[l]
                let gw = gp + offset.weight, gbias = gp + offset.bias
                for r in 0..<rows {
                    let dr = d + r * out, ar = a + r * input
                    for k in 0..<out { gbias[k] += dr[k] }
                    for j in 0..<input {
                        let x = ar[j]
                        let row = gw + j * out
                        for k in 0..<out { row[k] += x * dr[k] }
                    }
                }
                guard l > 0 else { continue }
                // Back through layer l's weights and the activation of the hidden layer below.
                for r in 0..<rows {
                    let dr = d + r * out, ar = a + r * input, br = below + r * input
                    for j in 0..<input {
                        let row = pp + offset.weight + j * out
                        var back: Float = 0
                        for k in 0..<out { back += dr[k] * row[k] }
                        let activated = ar[j]
                        br[j] = back * (relu ? (activated > 0 ? 1 : 0) : 1 - activated * activated)
                    }
                }
            }
        }}}}}
        return loss
    }

    /// A label as a class index: rounded and clamped into 0..<outputCount (labels are checked before training).
    static func classIndex(_ label: Float, outputCount: Int) -> Int {
        guard label.isFinite else { return 0 }
        return min(max(Int(label.rounded()), 0), outputCount - 1)
    }
}
