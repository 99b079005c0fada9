extension FeatureStatistics {
    /// The same statistics as if they came from `rows` rows (moments scaled): how a capped agent's weight enters.
    public func reweighted(to rows: Int) -> FeatureStatistics {
        guard count > rows, count > 0 else { return self }
        return FeatureStatistics(count: rows, missingCount: missingCount, mean: mean, m2: m2 * Double(rows) / Double(count), min: min, max: max)
    }

    /// Passes `validate()`.
    public var isConsistent: Bool { (try? validate()) != nil }
}

/// One agent's answer to a statistics task.
public struct DataSummary: Codable, Hashable, Sendable {
    public enum Labels: Codable, Hashable, Sendable {
        case numeric(FeatureStatistics)
        case text(LabelCounts)
    }
    public var features: [FeatureStatistics]
    public var labels: Labels
    public init(features: [FeatureStatistics], labels: Labels) {
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
                .reduce(FeatureStatistics.empty) { $0.merged(with: $1.reweighted(to: cap)) }
            features.append(standardize ? Self.transform(merged) : .identity)
        }
        var target = ColumnTransform.identity
        var labels: [String] = []
        var vocabulary = LabelCounts()
        for s in summaries {
            if case .text(let counts) = s.labels { vocabulary.merge(counts) }
        }
        if !vocabulary.counts.isEmpty {
            labels = vocabulary.vocabulary.labels
            guard labels.count <= classes else { throw .tooManyLabels(count: labels.count, classes: classes, labels: labels) }
        } else if regression, standardize {
            let columns = summaries.compactMap { s -> FeatureStatistics? in if case .numeric(let c) = s.labels { c } else { nil } }
            target = Self.transform(Self.plausible(columns).reduce(FeatureStatistics.empty) { $0.merged(with: $1.reweighted(to: cap)) })
        }
        return Preprocessing(featureNames: featureNames, features: features, target: target, labels: labels)
    }

    /// center = mean, scale = population std (1 when 0, not finite or fewer than 2 rows), fill = mean.
    static func transform(_ s: FeatureStatistics) -> ColumnTransform {
        guard s.count > 0, s.mean.isFinite else { return .identity }
        return ColumnTransform(center: s.mean, scale: Standardization.scale(of: s), fill: s.mean)
    }

    /// With 3 or more agents, drops the summaries that cannot be an honest agent's next to the others': a
    /// mean further than `outlierSpread` spreads from the median agent's mean (spread = the larger of the
    /// median agent's standard deviation and the median absolute deviation of the agents' means), or a
    /// standard deviation above `outlierSpread` times the median agent's. Non-IID agents differ; they do not
    /// differ by orders of magnitude on the same column.
    static func plausible(_ columns: [FeatureStatistics], outlierSpread: Double = 10) -> [FeatureStatistics] {
        let present = columns.filter { $0.count > 0 }
        guard present.count >= 3 else { return columns }
        let means = present.map(\.mean), stds = present.map(\.standardDeviation)
        let centre = means.median!, typicalStd = stds.median!
        let mad = means.map { abs($0 - centre) }.median!
        let spread = max(typicalStd, mad, abs(centre) * 1e-6, 1e-12)
        return present.filter { c in
            abs(c.mean - centre) <= outlierSpread * spread && c.standardDeviation <= outlierSpread * max(typicalStd, spread)
        }
    }

    func weightCap(_ counts: [Int]) -> Int {
        let sorted = counts.sorted()
        guard !sorted.isEmpty else { return .max }
        let median = sorted[sorted.count / 2]
        let cap = Double(max(1, median)) * maxWeightRatio
        return cap >= Double(Int.max) ? .max : Int(cap)
    }
}
