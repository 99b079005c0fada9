/// Which model family a parameter vector belongs to.
public enum ModelKind: String, Sendable, Codable, CaseIterable {
    /// Multinomial logistic regression (softmax + cross-entropy).
    case softmaxRegression = "softmax"
    /// Least-squares linear regression with one output.
    case linearRegression = "linear"
    /// A multilayer perceptron classifier (`MLP`): hidden layers and activation in the spec.
    case mlp = "mlp"
    /// Named tensors the coordinator aggregates without knowing what they are (`--initial-model FILE.npz`);
    /// trained by the data owners' own trainers, not by the agent's built-in ones.
    case custom = "custom"
}

/// A named tensor of a model: its name and shape (row-major float32 values in the flat parameter vector).
public struct TensorShape: Hashable, Sendable, Codable {
    public var name: String
    public var shape: [Int]
    public init(name: String, shape: [Int]) {
        self.name = name
        self.shape = shape
    }

    /// The elements of `shape`, nil when it overflows or exceeds `limit`.
    public static func elementCount(_ shape: [Int], limit: Int = Int(Int32.max)) -> Int? {
        var count = 1
        for d in shape {
            guard d >= 0 else { return nil }
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, product <= limit else { return nil }
            count = product
        }
        return count
    }
}

/// Shape of a model. Parameters are ONE flat contiguous `[Float]`, its tensors one after the other in
/// `tensorShapes` order: for softmax and linear regression the weights W row-major (featureCount x
/// outputCount) then the bias b (outputCount); for an MLP each layer's weight then bias.
public struct ModelSpec: Hashable, Sendable, Codable {
    public var kind: ModelKind
    public var featureCount: Int
    /// Classes for softmax and MLP, 1 for linear.
    public var outputCount: Int
    /// MLP only: the hidden layers' widths, input side first (empty for the linear kinds).
    public var hidden: [Int]
    /// MLP only: the hidden layers' nonlinearity.
    public var activation: MLP.Activation
    /// Custom models only: the tensors, in the order of the flat parameter vector.
    public var tensors: [TensorShape]

    /// The most tensors a custom model may have (the wire's tensor list holds 1024).
    public static let maxTensors = 1024

    public init(kind: ModelKind, featureCount: Int, outputCount: Int, hidden: [Int] = [], activation: MLP.Activation = .relu,
                tensors: [TensorShape] = []) {
        precondition(Self.isValid(kind: kind, featureCount: featureCount, outputCount: outputCount, hidden: hidden, tensors: tensors),
                     "invalid model: \(kind) \(featureCount)x\(outputCount) hidden \(hidden), \(tensors.count) tensors")
        self.tensors = kind == .custom ? tensors : []
        self.kind = kind
        self.featureCount = featureCount
        self.outputCount = outputCount
        self.hidden = kind == .mlp ? hidden : []
        self.activation = activation
    }

    /// Specs stored before MLPs existed have no `hidden` or `activation`.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let kind = try c.decode(ModelKind.self, forKey: .kind)
        let featureCount = try c.decode(Int.self, forKey: .featureCount)
        let outputCount = try c.decode(Int.self, forKey: .outputCount)
        let hidden = try c.decodeIfPresent([Int].self, forKey: .hidden) ?? []
        let activation = try c.decodeIfPresent(MLP.Activation.self, forKey: .activation) ?? .relu
        let tensors = try c.decodeIfPresent([TensorShape].self, forKey: .tensors) ?? []
        guard Self.isValid(kind: kind, featureCount: featureCount, outputCount: outputCount, hidden: hidden, tensors: tensors) else {
            throw DecodingError.dataCorruptedError(forKey: .hidden, in: c, debugDescription: "not a valid model shape")
        }
        self.init(kind: kind, featureCount: featureCount, outputCount: outputCount, hidden: hidden, activation: activation, tensors: tensors)
    }

    /// Whether `init` accepts these values (for values read from outside: a file, a flag, the wire).
    public static func isValid(kind: ModelKind, featureCount: Int, outputCount: Int, hidden: [Int], tensors: [TensorShape] = []) -> Bool {
        guard featureCount >= 0, outputCount >= 1, kind == .custom || tensors.isEmpty else { return false }
        switch kind {
        case .softmaxRegression: return hidden.isEmpty
        case .linearRegression: return hidden.isEmpty && outputCount == 1
        case .custom:
            guard hidden.isEmpty, (1...maxTensors).contains(tensors.count), Set(tensors.map(\.name)).count == tensors.count,
                  tensors.allSatisfy({ !$0.name.isEmpty && $0.shape.count <= 8 }) else { return false }
            var total = 0
            for tensor in tensors {
                guard let count = TensorShape.elementCount(tensor.shape) else { return false }
                total += count
                guard total <= Int(Int32.max) else { return false }
            }
            return true
        case .mlp:
            // One output: a regression (a number); two or more: classes.
            return featureCount >= 1 && outputCount >= 1 && !hidden.isEmpty && hidden.count <= MLP.maxHiddenLayers
                && hidden.allSatisfy { (1...MLP.maxWidth).contains($0) }
        }
    }

    /// Predicts classes (softmax regression, an MLP of two or more outputs) rather than a number (linear
    /// regression, an MLP of one output).
    public var isClassifier: Bool { kind != .linearRegression && !(kind == .mlp && outputCount == 1) }

    /// The MLP this spec describes (nil for the linear kinds).
    public var mlp: MLP? {
        kind == .mlp ? MLP(featureCount: featureCount, hidden: hidden, outputCount: outputCount, activation: activation,
                           output: outputCount == 1 ? .regression : .classes) : nil
    }

    public var parameterCount: Int {
        if kind == .custom { return tensors.reduce(0) { $0 + ($1.shape.reduce(1, *)) } }
        return mlp?.parameterCount ?? featureCount * outputCount + outputCount
    }

    /// Offset of the bias block inside the flat parameter vector (the linear kinds).
    public var biasOffset: Int { featureCount * outputCount }

    /// The tensors in the order they appear in the flat vector: `[("weight", [f, o]), ("bias", [o])]` for the
    /// linear kinds, `layer1.weight`, `layer1.bias`, … for an MLP.
    public var tensorShapes: [(name: String, shape: [Int])] {
        if kind == .custom { return tensors.map { ($0.name, $0.shape) } }
        return mlp?.tensorShapes ?? [("weight", [featureCount, outputCount]), ("bias", [outputCount])]
    }

    /// All zeros for the linear kinds (and for a custom model, whose start comes from its `.npz`); seeded
    /// He/Glorot weights for an MLP (zeros would keep its hidden units identical for ever).
    public func initialParameters(seed: UInt64 = 1) -> [Float] {
        mlp?.initialParameters(seed: seed) ?? [Float](repeating: 0, count: parameterCount)
    }

    /// `mlp relu 60-32-16-10`, `softmax 60x10`: how logs and the state database name the model.
    public var summary: String {
        switch kind {
        case .mlp: return "mlp \(activation.rawValue) \(([featureCount] + hidden + [outputCount]).map(String.init).joined(separator: "-"))"
        case .softmaxRegression, .linearRegression: return "\(kind.rawValue) \(featureCount)x\(outputCount)"
        case .custom: return "custom, \(tensors.count) tensor\(tensors.count == 1 ? "" : "s"), \(parameterCount) parameters"
        }
    }
}

/// Row-major features, `count x featureCount`. Labels: class index stored as Float for softmax
/// (0..<classes), the target value for linear.
public struct Dataset: Sendable {
    public var featureCount: Int
    public var features: [Float]
    public var labels: [Float]
    public var count: Int { labels.count }

    public init(featureCount: Int, features: [Float], labels: [Float]) {
        precondition(featureCount >= 0, "featureCount must be >= 0")
        precondition(features.count == labels.count * featureCount,
                     "features.count (\(features.count)) must equal labels.count (\(labels.count)) x featureCount (\(featureCount))")
        self.featureCount = featureCount
        self.features = features
        self.labels = labels
    }

    /// A dataset made of the given rows, in the given order.
    public func subset(_ indices: some Sequence<Int>) -> Dataset {
        var f: [Float] = []
        var l: [Float] = []
        for i in indices {
            precondition(i >= 0 && i < count, "index \(i) out of range 0..<\(count)")
            f.append(contentsOf: features[(i * featureCount)..<((i + 1) * featureCount)])
            l.append(labels[i])
        }
        return Dataset(featureCount: featureCount, features: f, labels: l)
    }

    /// Concatenation of datasets with the same feature count.
    public static func concatenating(_ parts: [Dataset], featureCount: Int) -> Dataset {
        var f: [Float] = []
        var l: [Float] = []
        f.reserveCapacity(parts.reduce(0) { $0 + $1.features.count })
        l.reserveCapacity(parts.reduce(0) { $0 + $1.count })
        for p in parts {
            precondition(p.featureCount == featureCount, "feature count mismatch")
            f.append(contentsOf: p.features)
            l.append(contentsOf: p.labels)
        }
        return Dataset(featureCount: featureCount, features: f, labels: l)
    }
}
