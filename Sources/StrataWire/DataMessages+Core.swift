import StrataCore

// Between the wire's layouts and StrataCore's values. Counts from the wire are converted exactly: a count
// that does not fit an Int64 makes the whole summary unusable (nil), never a trap.

extension WireColumnTransform {
    public init(_ t: ColumnTransform) { self.init(center: t.center, scale: t.scale, fill: t.fill) }
}

extension ColumnTransform {
    public init(_ t: WireColumnTransform) { self.init(center: t.center, scale: t.scale, fill: t.fill) }
}

extension WirePreprocessing {
    public init(_ p: Preprocessing) {
        self.init(features: p.features.map(WireColumnTransform.init), target: WireColumnTransform(p.target), labels: p.labels)
    }
}

extension Preprocessing {
    public init(_ p: WirePreprocessing, featureNames: [String] = []) {
        self.init(featureNames: featureNames, features: p.features.map(ColumnTransform.init), target: ColumnTransform(p.target), labels: p.labels)
    }
}

extension FeatureStatistics {
    public init?(_ s: WireColumnStatistics) {
        guard let count = Int(exactly: s.count), let missing = Int(exactly: s.missing) else { return nil }
        self.init(count: count, missingCount: missing, mean: s.mean, m2: s.m2, min: s.min, max: s.max)
    }
}

extension WireColumnStatistics {
    public init(_ s: FeatureStatistics) {
        self.init(count: UInt64(clamping: s.count), missing: UInt64(clamping: s.missingCount), mean: s.mean, m2: s.m2, min: s.min, max: s.max)
    }
}

extension DataSummary {
    public init?(_ s: WireDataStatistics) {
        var features: [FeatureStatistics] = []
        features.reserveCapacity(s.features.count)
        for f in s.features {
            guard let summary = FeatureStatistics(f) else { return nil }
            features.append(summary)
        }
        switch s.labels {
        case .numeric(let column):
            guard let summary = FeatureStatistics(column) else { return nil }
            self.init(features: features, labels: .numeric(summary))
        case .text(let counts):
            var labels: [String: Int] = [:]
            for entry in counts {
                guard let count = Int(exactly: entry.count), labels[entry.label] == nil else { return nil }
                labels[entry.label] = count
            }
            self.init(features: features, labels: .text(LabelCounts(labels)))
        }
    }
}

extension WireDataStatistics {
    public init(_ s: DataSummary) {
        let labels: WireLabelStatistics
        switch s.labels {
        case .numeric(let column): labels = .numeric(WireColumnStatistics(column))
        case .text(let counts):
            labels = .text(counts.counts.keys.sorted().map { WireLabelCount(label: $0, count: UInt64(clamping: counts.counts[$0]!)) })
        }
        self.init(features: s.features.map(WireColumnStatistics.init), labels: labels)
    }
}

extension EvaluationStatistics {
    /// The wire's counts as numbers (u64 → Double: exact up to 2^53, and a count anywhere near that fails
    /// `validate`'s row check anyway).
    public init(_ w: WireEvaluationStatistics) {
        switch w {
        case .classification(let classes, let positive, let negative):
            self = .classification(ClassCounts(support: classes.map { Double($0.support) }, predicted: classes.map { Double($0.predicted) },
                                               correct: classes.map { Double($0.correct) },
                                               positiveScores: positive.map { Double($0) }, negativeScores: negative.map { Double($0) }))
        case .regression(let r):
            self = .regression(RegressionSums(count: Double(r.count), sumResidual: r.sumResidual, sumAbsoluteResidual: r.sumAbsoluteResidual,
                                              sumSquaredResidual: r.sumSquaredResidual, sumTarget: r.sumTarget, sumSquaredTarget: r.sumSquaredTarget))
        }
    }
}

extension WireEvaluationStatistics {
    /// An agent's statistics (whole, non-negative counts) as they travel.
    public init(_ s: EvaluationStatistics) {
        func count(_ v: Double) -> UInt64 { v.isFinite && v > 0 ? UInt64(min(v.rounded(), 1.8e19)) : 0 }
        switch s {
        case .classification(let c):
            let classes = c.support.indices.map { k in
                WireClassCounts(support: count(c.support[k]), predicted: count(c.predicted[k]), correct: count(c.correct[k]))
            }
            self = .classification(classes: classes, positiveScores: c.positiveScores.map(count), negativeScores: c.negativeScores.map(count))
        case .regression(let r):
            self = .regression(WireRegressionSums(count: count(r.count), sumResidual: r.sumResidual, sumAbsoluteResidual: r.sumAbsoluteResidual,
                                                  sumSquaredResidual: r.sumSquaredResidual, sumTarget: r.sumTarget, sumSquaredTarget: r.sumSquaredTarget))
        }
    }
}
