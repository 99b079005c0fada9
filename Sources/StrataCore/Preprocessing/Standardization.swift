/// A per-feature affine rescaling, x' = (x − mean) / scale, fixed once for a federation and applied by every
/// agent to its training and evaluation rows (and by anyone who evaluates or exports the model), so that
/// features spanning 1e-3 … 1e6 reach the model on one scale.
///
/// Computed from merged `FeatureStatistics` (mean; scale = population standard deviation, or 1 when the
/// standard deviation is 0 — a constant column — or fewer than 2 values were seen), or stated: all of it
/// (`init(means:scales:)`), some features (`overriding(_:featureNames:)`), or none (`identity`).
/// Arithmetic is in `Double`, each result rounded once to `Float`. A missing value (NaN) stays NaN.
public struct Standardization: Sendable, Hashable, Codable {
    public let means: [Double]
    /// Every scale is finite and > 0.
    public let scales: [Double]

    public var featureCount: Int { means.count }

    /// One feature's fixed scaling, e.g. decoded from a JSON file `{"income": {"mean": 52000, "scale": 15000}}`
    /// (`[String: Standardization.Scaling]`).
    public struct Scaling: Sendable, Hashable, Codable {
        public var mean: Double
        public var scale: Double
        public init(mean: Double, scale: Double) {
            self.mean = mean
            self.scale = scale
        }
    }

    /// The standardisation of features with these (merged) statistics.
    public init(statistics: [FeatureStatistics]) {
        means = statistics.map { $0.count > 0 && $0.mean.isFinite ? $0.mean : 0 }
        scales = statistics.map(Self.scale(of:))
    }

    /// The scale a feature with these statistics gets: its population standard deviation, or 1 when that is
    /// 0 (or not finite) or the count is below 2.
    public static func scale(of statistics: FeatureStatistics) -> Double {
        guard statistics.count >= 2 else { return 1 }
        let std = statistics.standardDeviation
        return std > 0 && std.isFinite ? std : 1
    }

    /// Stated statistics: every mean finite, every scale finite and > 0.
    public init(means: [Double], scales: [Double]) throws(StandardizationError) {
        guard means.count == scales.count else { throw .countMismatch(means: means.count, scales: scales.count) }
        for j in means.indices {
            guard means[j].isFinite else { throw .invalidMean(feature: j, value: means[j]) }
            guard scales[j].isFinite, scales[j] > 0 else { throw .invalidScale(feature: j, value: scales[j]) }
        }
        self.means = means
        self.scales = scales
    }

    /// Values already checked (a `Preprocessing` whose transforms are valid).
    init(checkedMeans means: [Double], scales: [Double]) {
        self.means = means
        self.scales = scales
    }

    /// Leaves every value as it is (standardisation turned off).
    public static func identity(featureCount: Int) -> Standardization {
        try! Standardization(means: Array(repeating: 0, count: featureCount), scales: Array(repeating: 1, count: featureCount))
    }

    public var isIdentity: Bool { means.allSatisfy { $0 == 0 } && scales.allSatisfy { $0 == 1 } }

    /// This standardisation with the named features' mean and scale replaced by stated ones. Throws when a
    /// name is not a feature, or a stated value is not usable.
    public func overriding(_ fixed: [String: Scaling], featureNames: [String]) throws(StandardizationError) -> Standardization {
        guard featureNames.count == featureCount else { throw .countMismatch(means: featureCount, scales: featureNames.count) }
        var means = self.means, scales = self.scales
        for (name, scaling) in fixed.sorted(by: { $0.key < $1.key }) {
            guard let j = featureNames.firstIndex(of: name) else { throw .unknownFeature(name, features: featureNames) }
            means[j] = scaling.mean
            scales[j] = scaling.scale
        }
        return try Standardization(means: means, scales: scales)
    }

    /// x' = (x − mean_j) / scale_j over a row-major `rows × featureCount` matrix, in place.
    public func apply(to features: inout [Float], featureCount: Int) {
        transform(&features, featureCount: featureCount) { x, j in (x - means[j]) / scales[j] }
    }

    /// The inverse, x = x' · scale_j + mean_j, in place.
    public func invert(_ features: inout [Float], featureCount: Int) {
        transform(&features, featureCount: featureCount) { x, j in x * scales[j] + means[j] }
    }

    public func apply(to dataset: inout Dataset) {
        apply(to: &dataset.features, featureCount: dataset.featureCount)
    }

    public func applied(to dataset: Dataset) -> Dataset {
        var copy = dataset
        apply(to: &copy)
        return copy
    }

    private func transform(_ features: inout [Float], featureCount: Int, _ f: (Double, Int) -> Double) {
        precondition(featureCount == self.featureCount, "the standardisation has \(self.featureCount) features, the data \(featureCount)")
        guard featureCount > 0 else { return }
        precondition(features.count % featureCount == 0, "features.count (\(features.count)) is not a multiple of featureCount (\(featureCount))")
        features.withUnsafeMutableBufferPointer { x in
            var offset = 0
            while offset < x.count {
                for j in 0..<featureCount { x[offset + j] = Float(f(Double(x[offset + j]), j)) }
                offset += featureCount
            }
        }
    }

    public init(from decoder: any Decoder) throws {
        enum Keys: String, CodingKey { case means, scales }
        let c = try decoder.container(keyedBy: Keys.self)
        try self.init(means: c.decode([Double].self, forKey: .means), scales: c.decode([Double].self, forKey: .scales))
    }
}

public enum StandardizationError: Error, Hashable, Sendable, CustomStringConvertible {
    case countMismatch(means: Int, scales: Int)
    case invalidMean(feature: Int, value: Double)
    case invalidScale(feature: Int, value: Double)
    case unknownFeature(String, features: [String])

    public var description: String {
        switch self {
        case .countMismatch(let means, let scales): return "standardisation with \(means) means but \(scales) scales (or feature names)"
        case .invalidMean(let feature, let value): return "feature \(feature): mean \(value) is not a finite number"
        case .invalidScale(let feature, let value): return "feature \(feature): scale \(value) must be a finite number > 0"
        case .unknownFeature(let name, let features): return "no feature '\(name)' to standardise; features: \(features.joined(separator: ", "))"
        }
    }
}
