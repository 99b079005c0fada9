/// Which model family a parameter vector belongs to.
public enum ModelKind: String, Sendable, Codable, CaseIterable {
    /// Multinomial logistic regression (softmax + cross-entropy).
    case softmaxRegression = "softmax"
    /// Least-squares linear regression with one output.
    case linearRegression = "linear"
}

/// Shape of a model. Parameters are ONE flat contiguous `[Float]`:
/// weights W row-major (featureCount x outputCount) then bias b (outputCount).
public struct ModelSpec: Hashable, Sendable, Codable {
    public var kind: ModelKind
    public var featureCount: Int
    /// Classes for softmax, 1 for linear.
    public var outputCount: Int

    public init(kind: ModelKind, featureCount: Int, outputCount: Int) {
        precondition(featureCount >= 0, "featureCount must be >= 0")
        precondition(outputCount >= 1, "outputCount must be >= 1")
        precondition(kind != .linearRegression || outputCount == 1, "linear regression has exactly one output")
        self.kind = kind
        self.featureCount = featureCount
        self.outputCount = outputCount
    }

    /// f*o + o
    public var parameterCount: Int { featureCount * outputCount + outputCount }

    /// Offset of the bias block inside the flat parameter vector.
    public var biasOffset: Int { featureCount * outputCount }

    /// `[("weight", [f, o]), ("bias", [o])]`, in the order they appear in the flat vector.
    public var tensorShapes: [(name: String, shape: [Int])] {
        [("weight", [featureCount, outputCount]), ("bias", [outputCount])]
    }

    /// All zeros (deterministic).
    public func initialParameters() -> [Float] {
        [Float](repeating: 0, count: parameterCount)
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
