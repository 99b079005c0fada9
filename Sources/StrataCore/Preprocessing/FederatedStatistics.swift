/// One column's summary from one agent: what a statistics task returns (counts and central moments, so
/// that agents' summaries merge exactly).
public struct ColumnSummary: Codable, Hashable, Sendable {
    public var count: Int64
    public var missing: Int64
    public var mean: Double
    /// Sum of squared deviations from the mean.
    public var m2: Double
    public var min: Double
    public var max: Double

    public init(count: Int64, missing: Int64, mean: Double, m2: Double, min: Double, max: Double) {
        self.count = count
        self.missing = missing
        self.mean = mean
        self.m2 = m2
        self.min = min
        self.max = max
    }

    public static let empty = ColumnSummary(count: 0, missing: 0, mean: 0, m2: 0, min: .infinity, max: -.infinity)

    /// Welford's one-pass summary of `values` (NaN = missing).
    public init(values: some Sequence<Double>) {
        var s = ColumnSummary.empty
        for v in values {
            guard !v.isNaN else { s.missing += 1; continue }
            s.count += 1
            let d = v - s.mean
            s.mean += d / Double(s.count)
            s.m2 += d * (v - s.mean)
            s.min = Swift.min(s.min, v)
            s.max = Swift.max(s.max, v)
        }
        self = s
    }

    /// Consistent with itself: what the coordinator requires of an agent's summary.
    public var isConsistent: Bool {
        guard count >= 0, missing >= 0 else { return false }
        if count == 0 { return true }
        return mean.isFinite && m2.isFinite && m2 >= 0 && min.isFinite && max.isFinite && min <= max
            && mean >= min - abs(min) * 1e-9 && mean <= max + abs(max) * 1e-9
    }

    /// Chan, Golub and LeVeque's pairwise merge: exact and stable.
    public func merged(with other: ColumnSummary) -> ColumnSummary {
        guard other.count > 0 else { return ColumnSummary(count: count, missing: missing + other.missing, mean: mean, m2: m2, min: min, max: max) }
        guard count > 0 else { return ColumnSummary(count: other.count, missing: missing + other.missing, mean: other.mean, m2: other.m2, min: other.min, max: other.max) }
        let n = Double(count), m = Double(other.count), total = n + m
        let delta = other.mean - mean
        return ColumnSummary(count: count + other.count, missing: missing + other.missing,
                             mean: mean + delta * m / total, m2: m2 + other.m2 + delta * delta * n * m / total,
                             min: Swift.min(min, other.min), max: Swift.max(max, other.max))
    }

    /// The same summary as if it held `rows` rows (its moments scaled): how a capped agent's weight enters.
    public func reweighted(to rows: Int64) -> ColumnSummary {
        guard count > rows, count > 0 else { return self }
        return ColumnSummary(count: rows, missing: missing, mean: mean, m2: m2 * Double(rows) / Double(count), min: min, max: max)
    }

    /// Population variance (0 with fewer than 2 rows).
    public var variance: Double { count >= 2 ? m2 / Double(count) : 0 }
}

/// One agent's answer to a statistics task.
public struct DataSummary: Codable, Hashable, Sendable {
    public enum Labels: Codable, Hashable, Sendable {
        case numeric(ColumnSummary)
        case text([String: Int64])
    }
    public var features: [ColumnSummary]
    public var labels: Labels
    public init(features: [ColumnSummary], labels: Labels) {
        self.features = features
        self.labels = labels
    }
}

/// Fixes a federation's preprocessing from its agents' summaries (docs/ALGORITHMS.md, "Federated
/// standardisation"). Pure: the coordinator gathers, this decides.
public struct FederatedStandardization: Sendable, Hashable {
    /// Standardise the features (and a regression target); off keeps the identity (the vocabulary is still built).
    public var standardize: Bool
    /// An agent's rows count at most this many times the median agent's (one agent cannot move the centre alone).
    public var maxWeightRatio: Double

    public init(standardize: Bool = true, maxWeightRatio: Double = 4) {
        self.standardize = standardize
        self.maxWeightRatio = maxWeightRatio
    }

    public enum Failure: Error, Hashable, CustomStringConvertible {
        case noSummaries
        case featureCountMismatch(expected: Int, got: Int)
        case tooManyLabels(count: Int, classes: Int, labels: [String])
        public var description: String {
            switch self {
            case .noSummaries: "no agent answered the statistics task"
            case .featureCountMismatch(let e, let g): "an agent summarised \(g) features, the model has \(e)"
            case .tooManyLabels(let count, let classes, let labels):
                "the agents hold \(count) distinct labels (\(labels.prefix(8).joined(separator: ", "))\(count > 8 ? ", …" : "")) but the model has \(classes) classes: set --classes \(count)"
            }
        }
    }

    /// - Parameters:
    ///   - regression: standardise the (numeric) target too.
    ///   - classes: the model's outputs; a text vocabulary larger than this is refused.
    public func preprocessing(from summaries: [DataSummary], featureNames: [String], regression: Bool, classes: Int) throws(Failure) -> Preprocessing {
        guard let first = summaries.first else { throw .noSummaries }
        let width = first.features.count
        for s in summaries where s.features.count != width { throw .featureCountMismatch(expected: width, got: s.features.count) }
        let cap = weightCap(summaries.map { $0.features.first?.count ?? 0 })
        var features: [ColumnTransform] = []
        for j in 0..<width {
            let merged = Self.plausible(summaries.map { $0.features[j] })
                .reduce(ColumnSummary.empty) { $0.merged(with: $1.reweighted(to: cap)) }
            features.append(standardize ? Self.transform(merged) : .identity)
        }
        var target = ColumnTransform.identity
        var labels: [String] = []
        var vocabulary: [String: Int64] = [:]
        for s in summaries {
            if case .text(let counts) = s.labels { vocabulary.merge(counts, uniquingKeysWith: +) }
        }
        if !vocabulary.isEmpty {
            labels = vocabulary.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
            guard labels.count <= classes else { throw .tooManyLabels(count: labels.count, classes: classes, labels: labels) }
        } else if regression, standardize {
            let columns = summaries.compactMap { s -> ColumnSummary? in if case .numeric(let c) = s.labels { c } else { nil } }
            target = Self.transform(Self.plausible(columns).reduce(ColumnSummary.empty) { $0.merged(with: $1.reweighted(to: cap)) })
        }
        return Preprocessing(featureNames: featureNames, features: features, target: target, labels: labels)
    }

    /// center = mean, scale = population std (1 when 0, not finite or fewer than 2 rows), fill = mean.
    static func transform(_ s: ColumnSummary) -> ColumnTransform {
        guard s.count > 0, s.mean.isFinite else { return .identity }
        let std = s.variance.squareRoot()
        let scale = std.isFinite && std > 0 && s.count >= 2 ? std : 1
        return ColumnTransform(center: s.mean, scale: scale, fill: s.mean)
    }

    /// With 3 or more agents, drops the summaries that cannot be an honest agent's next to the others': a
    /// mean further than `outlierSpread` spreads from the median agent's mean (spread = the larger of the
    /// median agent's standard deviation and the median absolute deviation of the agents' means), or a
    /// standard deviation above `outlierSpread` times the median agent's. Non-IID agents differ; they do not
    /// differ by orders of magnitude on the same column.
    static func plausible(_ columns: [ColumnSummary], outlierSpread: Double = 10) -> [ColumnSummary] {
        let present = columns.filter { $0.count > 0 }
        guard present.count >= 3 else { return columns }
        func median(_ values: [Double]) -> Double {
            let v = values.sorted()
            return v.count % 2 == 1 ? v[v.count / 2] : (v[v.count / 2 - 1] + v[v.count / 2]) / 2
        }
        let means = present.map(\.mean), stds = present.map { $0.variance.squareRoot() }
        let centre = median(means), typicalStd = median(stds)
        let mad = median(means.map { abs($0 - centre) })
        let spread = max(typicalStd, mad, abs(centre) * 1e-6, 1e-12)
        return present.filter { c in
            abs(c.mean - centre) <= outlierSpread * spread && c.variance.squareRoot() <= outlierSpread * max(typicalStd, spread)
        }
    }

    func weightCap(_ counts: [Int64]) -> Int64 {
        let sorted = counts.sorted()
        guard !sorted.isEmpty else { return .max }
        let median = sorted[sorted.count / 2]
        let cap = Double(max(1, median)) * maxWeightRatio
        return cap >= Double(Int64.max) ? .max : Int64(cap)
    }
}
