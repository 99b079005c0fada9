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

    /// The statistics merge's default cap: an agent counts at most 4 median agents.
    public static let defaultWeightRatio: Double = 4

    public init(standardize: Bool = true, maxWeightRatio: Double = FederatedStandardization.defaultWeightRatio) {
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

    /// How far (in spreads) a summary may lie from the median agent's before it is left out. Honest non-IID
    /// agents differ by an order of magnitude (a rural agent's lot sizes sit 15 spreads from the suburbs');
    /// a summary at d spreads that is kept squashes the honest agents' standardised values by about d/2, so
    /// 100 bounds what a lie can do at ~50× while an order of magnitude of honest difference is kept.
    public static let outlierSpread: Double = 100

    /// With 3 or more agents, drops the summaries that cannot be an honest agent's next to the others': a
    /// mean further than `outlierSpread` spreads from the median agent's mean (spread = the larger of the
    /// median agent's standard deviation and the median absolute deviation of the agents' means), or a
    /// standard deviation above `outlierSpread` times the median agent's.
    static func plausible(_ columns: [FeatureStatistics], outlierSpread: Double = outlierSpread) -> [FeatureStatistics] {
        let kept = plausibleIndices(columns, outlierSpread: outlierSpread)
        return columns.indices.filter { kept.contains($0) }.map { columns[$0] }
    }

    /// The indices of `columns` that `plausible` keeps.
    static func plausibleIndices(_ columns: [FeatureStatistics], outlierSpread: Double = outlierSpread) -> Set<Int> {
        let present = columns.indices.filter { columns[$0].count > 0 }
        guard present.count >= 3 else { return Set(columns.indices) }
        let means = present.map { columns[$0].mean }, stds = present.map { columns[$0].standardDeviation }
        let centre = means.median!, typicalStd = stds.median!
        let mad = means.map { abs($0 - centre) }.median!
        let spread = max(typicalStd, mad, abs(centre) * 1e-6, 1e-12)
        return Set(present.filter { i in
            let c = columns[i]
            return abs(c.mean - centre) <= outlierSpread * spread && c.standardDeviation <= outlierSpread * max(typicalStd, spread)
        })
    }

    /// The summaries `preprocessing(from:)` leaves out, as (summary index, feature index; nil for the target):
    /// the coordinator names them in its log, since a left-out honest agent trains on values far from 0.
    public static func leftOut(of summaries: [DataSummary], regression: Bool) -> [(summary: Int, feature: Int?)] {
        guard let width = summaries.first?.features.count, summaries.allSatisfy({ $0.features.count == width }) else { return [] }
        var out: [(Int, Int?)] = []
        for j in 0..<width {
            let kept = plausibleIndices(summaries.map { $0.features[j] })
            for i in summaries.indices where !kept.contains(i) && summaries[i].features[j].count > 0 { out.append((i, j)) }
        }
        if regression {
            let targets = summaries.map { s -> FeatureStatistics in if case .numeric(let c) = s.labels { c } else { .empty } }
            let kept = plausibleIndices(targets)
            for i in summaries.indices where !kept.contains(i) && targets[i].count > 0 { out.append((i, nil)) }
        }
        return out
    }

    func weightCap(_ counts: [Int]) -> Int {
        let sorted = counts.sorted()
        guard !sorted.isEmpty else { return .max }
        let median = sorted[sorted.count / 2]
        let cap = Double(max(1, median)) * maxWeightRatio
        return cap >= Double(Int.max) ? .max : Int(cap)
    }
}
