import Testing
@testable import StrataCore

/// Federated standardisation: summaries that merge exactly, a robust merge, and the transform itself.
/// Expected numbers are NumPy's (`x.mean()`, `x.var()`, population variance) for the same values.
@Suite struct FederatedStandardizationTests {
    let values: [Double] = [1e-3, 2.5, 1e6, 37.0, -4.25, 12345.678, 0.5, 999999.0, 3.0]

    @Test func aSummaryMatchesNumPy() {
        let s = FeatureStatistics(values: values)
        #expect(s.count == 9 && s.missingCount == 0)
        #expect(abs(s.mean - 223598.15877777777) / 223598.15877777777 < 1e-12)
        #expect(abs(s.variance - 172242798632.17014) / 172242798632.17014 < 1e-12)
        #expect(s.min == -4.25 && s.max == 1e6)
    }

    @Test func threePartitionsMergeToTheWhole() {
        let parts = [Array(values[0..<2]), Array(values[2..<6]), Array(values[6...])].map { FeatureStatistics(values: $0) }
        let merged = parts.reduce(FeatureStatistics.empty) { $0.merged(with: $1) }
        let whole = FeatureStatistics(values: values)
        #expect(merged.count == whole.count)
        #expect(abs(merged.mean - whole.mean) / whole.mean < 1e-12)
        #expect(abs(merged.m2 - 1550185187689.5312) / 1550185187689.5312 < 1e-12)
        #expect(merged.min == whole.min && merged.max == whole.max)
    }

    @Test func missingValuesAreCountedNotSummed() {
        let s = FeatureStatistics(values: [1, .nan, 3, .nan] as [Double])
        #expect(s.count == 2 && s.missingCount == 2 && s.mean == 2 && s.m2 == 2)
        #expect(FeatureStatistics(values: [Double]()).isConsistent)
        #expect(!FeatureStatistics(count: 2, missingCount: 0, mean: 5, m2: 1, min: 0, max: 1).isConsistent)  // mean outside [min, max]
        #expect(!FeatureStatistics(count: 2, missingCount: 0, mean: 0.5, m2: -1, min: 0, max: 1).isConsistent)
    }

    private func agent(_ columns: [[Double]], labels: DataSummary.Labels = .numeric(.empty)) -> DataSummary {
        DataSummary(features: columns.map { FeatureStatistics(values: $0) }, labels: labels)
    }

    @Test func theFederationStandardisesWithTheMergedMoments() throws {
        // Income in the thousands, a ratio in [0, 1], a constant column.
        let a = agent([[52_000, 61_000, 38_000], [0.2, 0.5, 0.3], [7, 7, 7]])
        let b = agent([[120_000, 95_000], [0.1, 0.9], [7, 7]])
        let p = try FederatedStandardization().preprocessing(from: [a, b], featureNames: ["income", "ratio", "k"], regression: false, classes: 2)
        let income = FeatureStatistics(values: [52_000, 61_000, 38_000, 120_000, 95_000])
        #expect(abs(p.features[0].center - income.mean) < 1e-6)
        #expect(abs(p.features[0].scale - income.variance.squareRoot()) < 1e-6)
        #expect(p.features[2].scale == 1)  // constant column: scale 1, not 0
        #expect(p.featureNames == ["income", "ratio", "k"])
        var rows: [Float] = [52_000, 0.2, 7, .nan, 0.5, 7]
        p.transformFeatures(&rows)
        #expect(abs(Double(rows[0]) - (52_000 - income.mean) / income.variance.squareRoot()) < 1e-5)
        #expect(rows[3] == 0)  // missing → fill (the mean) → 0
        #expect(rows[2] == 0)
    }

    @Test func aLyingAgentDoesNotMoveTheCentre() throws {
        let honest = (0..<4).map { i in agent([[Double(i), 10 + Double(i), 20 - Double(i)]]) }
        let liar = DataSummary(features: [FeatureStatistics(count: 3, missingCount: 0, mean: 1e12, m2: 1e30, min: 1e12, max: 1e12)], labels: .numeric(.empty))
        let p = try FederatedStandardization().preprocessing(from: honest + [liar], featureNames: [], regression: false, classes: 2)
        let clean = try FederatedStandardization().preprocessing(from: honest, featureNames: [], regression: false, classes: 2)
        #expect(p.features == clean.features)
        #expect(p.features[0].center < 20)
    }

    /// Deploy/tables.py's houses: a rural agent's lot sizes (mean 17,148, sd 17,688) sit 15 spreads from the
    /// suburbs' (1,139, sd 1,075). Left out at 10 spreads, its values standardised to ~+20 (up to 212) and
    /// every one of its updates overflowed. Honest differences of an order of magnitude are kept; a lie of
    /// 10^12 is still left out, and named.
    @Test func anHonestAgentAnOrderOfMagnitudeAwayIsKeptALieIsNamed() throws {
        func lots(_ mean: Double, _ sd: Double) -> FeatureStatistics {
            FeatureStatistics(count: 400, missingCount: 0, mean: mean, m2: sd * sd * 400, min: 0, max: mean + 10 * sd)
        }
        let city = lots(211, 150), suburbs = lots(1_139, 1_075), rural = lots(17_148, 17_688)
        let summaries = [city, suburbs, rural].map { DataSummary(features: [$0], labels: .numeric(.empty)) }
        let p = try FederatedStandardization().preprocessing(from: summaries, featureNames: ["lot"], regression: false, classes: 2)
        let pooled = [city, suburbs, rural].reduce(FeatureStatistics.empty) { $0.merged(with: $1) }
        #expect(abs(p.features[0].center - pooled.mean) < 1e-6, "the rural agent was left out")
        #expect(FederatedStandardization.leftOut(of: summaries, regression: false).isEmpty)
        // Its largest value standardises to a few units, not hundreds.
        #expect((rural.max - p.features[0].center) / p.features[0].scale < 15)

        let liar = DataSummary(features: [FeatureStatistics(count: 400, missingCount: 0, mean: 1e12, m2: 1e30, min: 1e12, max: 1e12)], labels: .numeric(.empty))
        let left = FederatedStandardization.leftOut(of: summaries + [liar], regression: false)
        #expect(left.count == 1 && left[0].summary == 3 && left[0].feature == 0)
    }

    @Test func aHugeCountIsCappedAtTheRatioOfTheMedian() throws {
        let small = (0..<3).map { _ in DataSummary(features: [FeatureStatistics(count: 100, missingCount: 0, mean: 0, m2: 100, min: -1, max: 1)], labels: .numeric(.empty)) }
        let big = DataSummary(features: [FeatureStatistics(count: 1_000_000, missingCount: 0, mean: 1, m2: 1_000_000, min: 0, max: 2)], labels: .numeric(.empty))
        let p = try FederatedStandardization(maxWeightRatio: 4).preprocessing(from: small + [big], featureNames: [], regression: false, classes: 2)
        // Weighted as 400 rows against 300: mean 400/700.
        #expect(abs(p.features[0].center - 400.0 / 700.0) < 1e-12)
    }

    @Test func textLabelsBecomeASortedVocabulary() throws {
        let a = agent([[1, 2]], labels: .text(LabelCounts(["declined": 3, "approved": 5])))
        let b = agent([[3, 4]], labels: .text(LabelCounts(["approved": 1, "review": 2])))
        let p = try FederatedStandardization().preprocessing(from: [a, b], featureNames: [], regression: false, classes: 3)
        #expect(p.labels == ["approved", "declined", "review"])
        #expect(throws: FederatedStandardization.Failure.tooManyLabels(count: 3, classes: 2, labels: ["approved", "declined", "review"])) {
            try FederatedStandardization().preprocessing(from: [a, b], featureNames: [], regression: false, classes: 2)
        }
    }

    @Test func aRegressionTargetIsStandardisedAndRestored() throws {
        let a = agent([[1, 2, 3]], labels: .numeric(FeatureStatistics(values: [100_000, 250_000, 175_000])))
        let p = try FederatedStandardization().preprocessing(from: [a], featureNames: [], regression: true, classes: 1)
        #expect(abs(p.target.center - 175_000) < 1e-9)
        #expect(abs(p.restoreTarget(p.transformTarget(123_456)) - 123_456) < 1e-6)
        let off = try FederatedStandardization(standardize: false).preprocessing(from: [a], featureNames: [], regression: true, classes: 1)
        #expect(off.target == .identity && off.features == [.identity])
    }
}
