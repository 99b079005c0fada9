import StrataCore
import NIOCore

/// One column's summary over an agent's training rows: what leaves an agent in a statistics task.
/// `mean` and `m2` (the sum of squared deviations from the mean) merge exactly across agents.
public struct WireColumnStatistics: Sendable, Hashable {
    /// Rows with a value.
    public var count: UInt64
    /// Rows without one (NULL).
    public var missing: UInt64
    public var mean: Double
    public var m2: Double
    public var min: Double
    public var max: Double

    public init(count: UInt64, missing: UInt64, mean: Double, m2: Double, min: Double, max: Double) {
        self.count = count
        self.missing = missing
        self.mean = mean
        self.m2 = m2
        self.min = min
        self.max = max
    }

    static let encodedSize = 48
}

/// The labels an agent holds: numbers (class indices or a regression target), or text.
public enum WireLabelStatistics: Sendable, Hashable {
    case numeric(WireColumnStatistics)
    /// Each distinct label with its row count.
    case text([WireLabelCount])
}

public struct WireLabelCount: Sendable, Hashable {
    public var label: String
    public var count: UInt64
    public init(label: String, count: UInt64) {
        self.label = label
        self.count = count
    }
}

/// Answer to a statistics task (update option 1).
public struct WireDataStatistics: Sendable, Hashable {
    /// One entry per feature column, in model order.
    public var features: [WireColumnStatistics]
    public var labels: WireLabelStatistics
    public init(features: [WireColumnStatistics], labels: WireLabelStatistics) {
        self.features = features
        self.labels = labels
    }
}

/// How a raw value becomes a model input: `(value ?? fill − center) / scale`.
public struct WireColumnTransform: Sendable, Hashable {
    public var center: Double
    public var scale: Double
    /// Stands in for a missing value (before centring), when the federation imputes.
    public var fill: Double
    public init(center: Double, scale: Double, fill: Double) {
        self.center = center
        self.scale = scale
        self.fill = fill
    }
    public static let identity = WireColumnTransform(center: 0, scale: 1, fill: 0)
}

/// The federation's preprocessing, part of its model (welcome / task option).
public struct WirePreprocessing: Sendable, Hashable {
    /// One per feature, in model order.
    public var features: [WireColumnTransform]
    /// Regression target: trained on `(y − center) / scale`; predictions map back. Identity for classes.
    public var target: WireColumnTransform
    /// Text labels: class k is `labels[k]`. Empty when labels are numbers.
    public var labels: [String]
    public init(features: [WireColumnTransform], target: WireColumnTransform = .identity, labels: [String] = []) {
        self.features = features
        self.target = target
        self.labels = labels
    }
}

/// Additive statistics of one evaluation, from which the coordinator derives metrics over all agents
/// exactly (update option 2).
public enum WireEvaluationStatistics: Sendable, Hashable {
    /// Per class (index k): rows whose label is k, rows predicted k, rows correctly predicted k. With two
    /// classes also a histogram of the predicted probability of class 1 in `bins` equal bins over [0, 1],
    /// one count array for rows labelled 1 and one for rows labelled 0 (empty otherwise).
    case classification(classes: [WireClassCounts], positiveScores: [UInt64], negativeScores: [UInt64])
    /// Residual r = prediction − target, in the target's own units.
    case regression(WireRegressionSums)
}

public struct WireClassCounts: Sendable, Hashable {
    public var support: UInt64
    public var predicted: UInt64
    public var correct: UInt64
    public init(support: UInt64, predicted: UInt64, correct: UInt64) {
        self.support = support
        self.predicted = predicted
        self.correct = correct
    }
}

public struct WireRegressionSums: Sendable, Hashable {
    public var count: UInt64
    public var sumResidual: Double
    public var sumAbsoluteResidual: Double
    public var sumSquaredResidual: Double
    public var sumTarget: Double
    public var sumSquaredTarget: Double
    public init(count: UInt64, sumResidual: Double, sumAbsoluteResidual: Double, sumSquaredResidual: Double, sumTarget: Double, sumSquaredTarget: Double) {
        self.count = count
        self.sumResidual = sumResidual
        self.sumAbsoluteResidual = sumAbsoluteResidual
        self.sumSquaredResidual = sumSquaredResidual
        self.sumTarget = sumTarget
        self.sumSquaredTarget = sumSquaredTarget
    }
}

public enum WireDataLimits {
    /// Labels a vocabulary may hold (text labels of one federation).
    public static let maxLabels = 65_535
    /// Bins of a score histogram.
    public static let maxScoreBins = 1_024
}

// MARK: - encoding

extension ByteBuffer {
    mutating func writeF64(_ value: Double) { writeInteger(value.bitPattern, endianness: .little) }

    mutating func writeColumnStatistics(_ s: WireColumnStatistics) {
        writeInteger(s.count, endianness: .little)
        writeInteger(s.missing, endianness: .little)
        writeF64(s.mean)
        writeF64(s.m2)
        writeF64(s.min)
        writeF64(s.max)
    }

    mutating func writeDataStatistics(_ s: WireDataStatistics) {
        writeInteger(UInt32(s.features.count), endianness: .little)
        for feature in s.features { writeColumnStatistics(feature) }
        switch s.labels {
        case .numeric(let column):
            writeInteger(UInt8(1))
            writeColumnStatistics(column)
        case .text(let counts):
            writeInteger(UInt8(2))
            writeInteger(UInt32(counts.count), endianness: .little)
            for entry in counts {
                writeWireString(entry.label)
                writeInteger(entry.count, endianness: .little)
            }
        }
    }

    mutating func writeColumnTransform(_ t: WireColumnTransform) {
        writeF64(t.center)
        writeF64(t.scale)
        writeF64(t.fill)
    }

    mutating func writePreprocessing(_ p: WirePreprocessing) {
        writeInteger(UInt32(p.features.count), endianness: .little)
        for feature in p.features { writeColumnTransform(feature) }
        writeColumnTransform(p.target)
        writeInteger(UInt32(p.labels.count), endianness: .little)
        for label in p.labels { writeWireString(label) }
    }

    mutating func writeModelLayers(_ layers: WireModelLayers) {
        writeInteger(layers.activation.rawValue)
        writeInteger(UInt16(clamping: layers.hidden.count), endianness: .little)
        for width in layers.hidden.prefix(Int(UInt16.max)) { writeInteger(width, endianness: .little) }
    }

    mutating func writeModelManifest(_ manifest: [WireTensorShape]) {
        writeInteger(UInt16(clamping: manifest.count), endianness: .little)
        for tensor in manifest.prefix(Int(UInt16.max)) {
            writeWireString(tensor.name)
            writeInteger(UInt8(clamping: tensor.shape.count))
            for d in tensor.shape.prefix(255) { writeInteger(d, endianness: .little) }
        }
    }

    mutating func writeFeatureNames(_ names: [String]) {
        writeInteger(UInt32(names.count), endianness: .little)
        for name in names { writeWireString(name) }
    }

    mutating func writeEvaluationStatistics(_ e: WireEvaluationStatistics) {
        switch e {
        case .classification(let classes, let positive, let negative):
            precondition(positive.count == negative.count, "score histograms must have the same bins")
            writeInteger(UInt8(1))
            writeInteger(UInt32(classes.count), endianness: .little)
            for c in classes {
                writeInteger(c.support, endianness: .little)
                writeInteger(c.predicted, endianness: .little)
                writeInteger(c.correct, endianness: .little)
            }
            writeInteger(UInt16(positive.count), endianness: .little)
            for v in positive { writeInteger(v, endianness: .little) }
            for v in negative { writeInteger(v, endianness: .little) }
        case .regression(let sums):
            writeInteger(UInt8(2))
            writeInteger(sums.count, endianness: .little)
            writeF64(sums.sumResidual)
            writeF64(sums.sumAbsoluteResidual)
            writeF64(sums.sumSquaredResidual)
            writeF64(sums.sumTarget)
            writeF64(sums.sumSquaredTarget)
        }
    }
}

// MARK: - decoding (every count is checked against the bytes left before anything is allocated)

extension PayloadReader {
    mutating func f64(_ field: String) throws(WireError) -> Double {
        Double(bitPattern: try u64(field))
    }

    /// A u32 element count whose elements take at least `minimumBytes` each: refused if the rest of the
    /// payload cannot hold them, so a lying count never allocates.
    mutating func count(_ field: String, minimumBytes: Int, limit: Int = Int(UInt32.max)) throws(WireError) -> Int {
        let count = Int(try u32(field))
        guard count <= limit else { throw .invalidValue(field: field, reason: "\(count) exceeds the limit of \(limit)") }
        guard count <= buffer.readableBytes / max(1, minimumBytes) else { throw .truncated(field: field) }
        return count
    }

    mutating func columnStatistics(_ field: String) throws(WireError) -> WireColumnStatistics {
        WireColumnStatistics(count: try u64(field + ".count"), missing: try u64(field + ".missing"),
                             mean: try f64(field + ".mean"), m2: try f64(field + ".m2"),
                             min: try f64(field + ".min"), max: try f64(field + ".max"))
    }

    mutating func dataStatistics(_ field: String) throws(WireError) -> WireDataStatistics {
        let n = try count(field + ".featureCount", minimumBytes: WireColumnStatistics.encodedSize)
        var features: [WireColumnStatistics] = []
        features.reserveCapacity(n)
        for i in 0..<n { features.append(try columnStatistics("\(field).features[\(i)]")) }
        let kind = try u8(field + ".labelKind")
        let labels: WireLabelStatistics
        switch kind {
        case 1:
            labels = .numeric(try columnStatistics(field + ".labels"))
        case 2:
            let m = try count(field + ".labelCount", minimumBytes: 10, limit: WireDataLimits.maxLabels)
            var counts: [WireLabelCount] = []
            counts.reserveCapacity(m)
            for i in 0..<m {
                counts.append(WireLabelCount(label: try string("\(field).labels[\(i)].label"), count: try u64("\(field).labels[\(i)].count")))
            }
            labels = .text(counts)
        default:
            throw .invalidValue(field: field + ".labelKind", reason: "unknown label kind \(kind)")
        }
        return WireDataStatistics(features: features, labels: labels)
    }

    mutating func columnTransform(_ field: String) throws(WireError) -> WireColumnTransform {
        WireColumnTransform(center: try f64(field + ".center"), scale: try f64(field + ".scale"), fill: try f64(field + ".fill"))
    }

    mutating func preprocessing(_ field: String) throws(WireError) -> WirePreprocessing {
        let n = try count(field + ".featureCount", minimumBytes: 24)
        var features: [WireColumnTransform] = []
        features.reserveCapacity(n)
        for i in 0..<n { features.append(try columnTransform("\(field).features[\(i)]")) }
        let target = try columnTransform(field + ".target")
        let m = try count(field + ".labelCount", minimumBytes: 2, limit: WireDataLimits.maxLabels)
        var labels: [String] = []
        labels.reserveCapacity(m)
        for i in 0..<m { labels.append(try string("\(field).labels[\(i)]")) }
        return WirePreprocessing(features: features, target: target, labels: labels)
    }

    /// An MLP's hidden layers: 1 to `MLP.maxHiddenLayers` layers of 1 to `MLP.maxWidth` units, checked
    /// before anything is allocated.
    mutating func modelLayers(_ field: String) throws(WireError) -> WireModelLayers {
        let byte = try u8(field + ".activation")
        guard let activation = WireModelLayers.Activation(rawValue: byte) else {
            throw .invalidValue(field: field + ".activation", reason: "unknown activation \(byte)")
        }
        let count = Int(try u16(field + ".count"))
        guard (1...MLP.maxHiddenLayers).contains(count) else {
            throw .invalidValue(field: field + ".count", reason: "\(count) hidden layers (1 to \(MLP.maxHiddenLayers))")
        }
        var hidden: [UInt32] = []
        for i in 0..<count {
            let width = try u32("\(field).hidden[\(i)]")
            guard (1...UInt32(MLP.maxWidth)).contains(width) else {
                throw .invalidValue(field: "\(field).hidden[\(i)]", reason: "width \(width) (1 to \(MLP.maxWidth))")
            }
            hidden.append(width)
        }
        return WireModelLayers(activation: activation, hidden: hidden)
    }

    /// A custom model's tensors: 1 to 1024, distinct non-empty names, rank ≤ 8, and in all at most 2^31 − 1
    /// values (counted without overflow before anything is allocated for them).
    mutating func modelManifest(_ field: String) throws(WireError) -> [WireTensorShape] {
        let count = Int(try u16(field + ".count"))
        guard (1...ModelSpec.maxTensors).contains(count) else {
            throw .invalidValue(field: field + ".count", reason: "\(count) tensors (1 to \(ModelSpec.maxTensors))")
        }
        var tensors: [WireTensorShape] = []
        var names = Set<String>()
        var total = 0
        for i in 0..<count {
            let name = try string("\(field)[\(i)].name")
            guard !name.isEmpty, names.insert(name).inserted else {
                throw .invalidValue(field: "\(field)[\(i)].name", reason: name.isEmpty ? "empty tensor name" : "tensor name '\(name)' appears twice")
            }
            let rank = Int(try u8("\(field)[\(i)].rank"))
            guard rank <= 8 else { throw .invalidValue(field: "\(field)[\(i)].rank", reason: "rank \(rank) (at most 8)") }
            var shape: [UInt32] = []
            for d in 0..<rank { shape.append(try u32("\(field)[\(i)].shape[\(d)]")) }
            guard let elements = TensorShape.elementCount(shape.map { Int($0) }), total <= Int(Int32.max) - elements else {
                throw .invalidValue(field: "\(field)[\(i)].shape", reason: "the model would hold more than 2^31 - 1 values")
            }
            total += elements
            tensors.append(WireTensorShape(name: name, shape: shape))
        }
        return tensors
    }

    mutating func featureNames(_ field: String) throws(WireError) -> [String] {
        let n = try count(field + ".count", minimumBytes: 2)
        var names: [String] = []
        names.reserveCapacity(n)
        for i in 0..<n { names.append(try string("\(field)[\(i)]")) }
        return names
    }

    mutating func evaluationStatistics(_ field: String) throws(WireError) -> WireEvaluationStatistics {
        let kind = try u8(field + ".kind")
        switch kind {
        case 1:
            let c = try count(field + ".classCount", minimumBytes: 24)
            var classes: [WireClassCounts] = []
            classes.reserveCapacity(c)
            for i in 0..<c {
                let p = "\(field).classes[\(i)]"
                classes.append(WireClassCounts(support: try u64(p + ".support"), predicted: try u64(p + ".predicted"), correct: try u64(p + ".correct")))
            }
            let bins = Int(try u16(field + ".bins"))
            guard bins <= WireDataLimits.maxScoreBins else {
                throw .invalidValue(field: field + ".bins", reason: "\(bins) exceeds the limit of \(WireDataLimits.maxScoreBins)")
            }
            guard bins * 16 <= buffer.readableBytes else { throw .truncated(field: field + ".scores") }
            var positive: [UInt64] = [], negative: [UInt64] = []
            for i in 0..<bins { positive.append(try u64("\(field).positiveScores[\(i)]")) }
            for i in 0..<bins { negative.append(try u64("\(field).negativeScores[\(i)]")) }
            return .classification(classes: classes, positiveScores: positive, negativeScores: negative)
        case 2:
            return .regression(WireRegressionSums(
                count: try u64(field + ".count"), sumResidual: try f64(field + ".sumResidual"),
                sumAbsoluteResidual: try f64(field + ".sumAbsoluteResidual"), sumSquaredResidual: try f64(field + ".sumSquaredResidual"),
                sumTarget: try f64(field + ".sumTarget"), sumSquaredTarget: try f64(field + ".sumSquaredTarget")))
        default:
            throw .invalidValue(field: field + ".kind", reason: "unknown evaluation kind \(kind)")
        }
    }
}
