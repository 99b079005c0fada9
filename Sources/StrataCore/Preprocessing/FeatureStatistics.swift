/// What one feature column holds, summarised so that summaries of disjoint parts of a dataset merge into the
/// summary of the whole: the number of values, the number of missing ones, their mean, M2 (the sum of squared
/// deviations from the mean), the smallest and the largest value.
///
/// A value is **missing** when it is NaN (the data source's mark for a NULL kept by `--null-policy impute`);
/// infinities are counted as missing too, since no mean can be taken over them (the SQLite source never
/// produces one). Everything is accumulated in `Double` whatever the input type.
///
/// Only these aggregates leave an agent: never a row.
public struct FeatureStatistics: Sendable, Hashable, Codable {
    /// Finite values seen.
    public var count: Int
    /// Missing values seen (NaN or ±infinity).
    public var missingCount: Int
    /// Mean of the finite values; 0 when `count` is 0.
    public var mean: Double
    /// Σ (x − mean)² over the finite values; 0 when `count` is 0.
    public var m2: Double
    /// Smallest finite value; +infinity when `count` is 0 (the identity of `min`).
    public var min: Double
    /// Largest finite value; −infinity when `count` is 0 (the identity of `max`).
    public var max: Double

    /// The statistics of no values at all: the identity of `merged(with:)`.
    public static let empty = FeatureStatistics(count: 0, missingCount: 0, mean: 0, m2: 0, min: .infinity, max: -.infinity)

    /// Statistics as they were computed elsewhere (decoded from the wire, or given). Use `validate()` before
    /// trusting values that came from another process.
    public init(count: Int, missingCount: Int, mean: Double, m2: Double, min: Double, max: Double) {
        self.count = count
        self.missingCount = missingCount
        self.mean = mean
        self.m2 = m2
        self.min = min
        self.max = max
    }

    /// The statistics of one column of values, in one pass (Welford).
    public init<S: Sequence>(values: S) where S.Element: BinaryFloatingPoint {
        var s = FeatureStatistics.empty
        for v in values { s.add(Double(v)) }
        self = s
    }

    /// Adds one value (Welford's update). NaN and ±infinity count as missing.
    @inline(__always)
    public mutating func add(_ x: Double) {
        guard x.isFinite else { missingCount += 1; return }
        count += 1
        let delta = x - mean
        mean += delta / Double(count)
        m2 += delta * (x - mean)
        if x < min { min = x }
        if x > max { max = x }
    }

    /// Population variance M2 / count (NumPy's `var(ddof=0)`); 0 when `count` is 0.
    public var variance: Double { count > 0 ? m2 / Double(count) : 0 }
    /// Sample variance M2 / (count − 1) (`var(ddof=1)`); 0 when `count` < 2.
    public var sampleVariance: Double { count > 1 ? m2 / Double(count - 1) : 0 }
    /// Population standard deviation (`std(ddof=0)`).
    public var standardDeviation: Double { variance.squareRoot() }
    /// No finite value was seen.
    public var isEmpty: Bool { count == 0 }

    /// The statistics of the union of the two disjoint sets of values: Chan, Golub and LeVeque's pairwise
    /// update ("Algorithms for computing the sample variance: analysis and recommendations", 1983):
    /// n = na + nb, δ = mean_b − mean_a, mean = mean_a + δ·nb/n, M2 = M2_a + M2_b + δ²·na·nb/n.
    /// Exact in real arithmetic, stable in floating point (no sum of squares is ever formed).
    public func merged(with other: FeatureStatistics) -> FeatureStatistics {
        let missing = missingCount + other.missingCount
        if other.count == 0 { var s = self; s.missingCount = missing; return s }
        if count == 0 { var s = other; s.missingCount = missing; return s }
        let na = Double(count), nb = Double(other.count)
        let n = na + nb
        let delta = other.mean - mean
        // Weighted by the larger part: mean_a + δ·nb/n when a is larger, else mean_b − δ·na/n (smaller correction).
        let mergedMean = count >= other.count ? mean + delta * (nb / n) : other.mean - delta * (na / n)
        let mergedM2 = m2 + other.m2 + delta * delta * (na / n) * nb
        return FeatureStatistics(count: count + other.count, missingCount: missing, mean: mergedMean, m2: mergedM2,
                                 min: Swift.min(min, other.min), max: Swift.max(max, other.max))
    }

    /// Computes every column of a row-major `rows × featureCount` matrix in one pass over the rows.
    public static func compute(features: [Float], featureCount: Int) -> [FeatureStatistics] {
        precondition(featureCount >= 0, "featureCount must be >= 0")
        guard featureCount > 0 else { return [] }
        precondition(features.count % featureCount == 0, "features.count (\(features.count)) is not a multiple of featureCount (\(featureCount))")
        var stats = [FeatureStatistics](repeating: .empty, count: featureCount)
        features.withUnsafeBufferPointer { x in
            stats.withUnsafeMutableBufferPointer { s in
                var offset = 0
                while offset < x.count {
                    for j in 0..<featureCount { s[j].add(Double(x[offset + j])) }
                    offset += featureCount
                }
            }
        }
        return stats
    }

    /// The statistics of every feature of a dataset (its features only, not its labels).
    public static func compute(_ dataset: Dataset) -> [FeatureStatistics] {
        compute(features: dataset.features, featureCount: dataset.featureCount)
    }

    /// Merges per-feature statistics of several disjoint parts (e.g. one array per agent) feature by feature.
    /// The parts are combined as a balanced binary tree in the order given, so the result depends only on
    /// that order: sort the parts (by client id, say) to make it reproducible. Every part must have the same
    /// number of features.
    public static func merged(_ parts: [[FeatureStatistics]]) -> [FeatureStatistics] {
        guard !parts.isEmpty else { return [] }
        var level = parts
        let featureCount = level[0].count
        precondition(level.allSatisfy { $0.count == featureCount }, "every part must have \(featureCount) features")
        while level.count > 1 {
            var next: [[FeatureStatistics]] = []
            next.reserveCapacity((level.count + 1) / 2)
            var i = 0
            while i + 1 < level.count {
                next.append(zip(level[i], level[i + 1]).map { $0.merged(with: $1) })
                i += 2
            }
            if i < level.count { next.append(level[i]) }
            level = next
        }
        return level[0]
    }

    /// Checks statistics that came from another process before they are merged: counts not negative, values
    /// finite, M2 ≥ 0, min ≤ mean ≤ max, and M2 no larger than a set of values within [min, max] allows
    /// (Popoviciu: variance ≤ (max − min)²/4), each with a relative rounding allowance.
    public func validate() throws(FeatureStatisticsError) {
        guard count >= 0, missingCount >= 0 else { throw .negativeCount(count: count, missing: missingCount) }
        if count == 0 {
            guard mean == 0, m2 == 0 else { throw .inconsistent("no values, but mean \(mean) and M2 \(m2)") }
            return
        }
        guard mean.isFinite, m2.isFinite, min.isFinite, max.isFinite else { throw .notFinite }
        guard m2 >= 0 else { throw .inconsistent("M2 \(m2) is negative") }
        guard min <= max else { throw .inconsistent("min \(min) > max \(max)") }
        let slack = 1e-9 * Swift.max(abs(min), abs(max), Double.leastNormalMagnitude)
        guard mean >= min - slack, mean <= max + slack else { throw .inconsistent("mean \(mean) outside [\(min), \(max)]") }
        let range = max - min
        let bound = Double(count) * range * range / 4
        guard m2 <= bound * (1 + 1e-9) + slack * slack * Double(count) else {
            throw .inconsistent("M2 \(m2) exceeds what \(count) values within [\(min), \(max)] can have (\(bound))")
        }
    }
}

extension FeatureStatistics {
    private enum CodingKeys: String, CodingKey { case count, missingCount, mean, m2, min, max }

    /// `min` and `max` are left out when `count` is 0, so that the encoding (JSON included) holds no infinity.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(count, forKey: .count)
        try c.encode(missingCount, forKey: .missingCount)
        try c.encode(mean, forKey: .mean)
        try c.encode(m2, forKey: .m2)
        if count > 0 {
            try c.encode(min, forKey: .min)
            try c.encode(max, forKey: .max)
        }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(count: try c.decode(Int.self, forKey: .count), missingCount: try c.decode(Int.self, forKey: .missingCount),
                  mean: try c.decode(Double.self, forKey: .mean), m2: try c.decode(Double.self, forKey: .m2),
                  min: try c.decodeIfPresent(Double.self, forKey: .min) ?? .infinity,
                  max: try c.decodeIfPresent(Double.self, forKey: .max) ?? -.infinity)
    }
}

public enum FeatureStatisticsError: Error, Hashable, Sendable, CustomStringConvertible {
    case negativeCount(count: Int, missing: Int)
    case notFinite
    case inconsistent(String)

    public var description: String {
        switch self {
        case .negativeCount(let count, let missing): return "feature statistics with a negative count (count \(count), missing \(missing))"
        case .notFinite: return "feature statistics with a non-finite mean, M2, min or max"
        case .inconsistent(let detail): return "inconsistent feature statistics: \(detail)"
        }
    }
}
