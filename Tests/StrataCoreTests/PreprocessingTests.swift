import Foundation
import Testing
@testable import StrataCore

/// Expected values computed with NumPy in 64-bit arithmetic on the same float32 values, per column:
/// `v = col[~np.isnan(col)]; v.mean(); ((v - v.mean())**2).sum(); v.min(); v.max()`.
@Suite struct FeatureStatisticsTests {
    /// 30 rows × 5 features, float32 (np.random.default_rng(12)): income-like 1e4…1e6 (log-uniform), a ratio
    /// 1e-3…1 (log-uniform), a constant 7.25, a feature spanning 1e-3…1e6 (10**uniform(-3, 6)), an age with
    /// 4 missing values (NaN).
    static let rows: [[Float]] = [
        [31743.068, 0.23928212, 7.25, 121175.484, 54],
        [782538.8, 0.096583605, 7.25, 31.704042, 35],
        [23913.37, 0.21703026, 7.25, 10.981722, .nan],
        [22834.043, 4.0182234e-03, 7.25, 1516.4951, 43],
        [50093.168, 2.5296195e-03, 7.25, 353.42023, 49],
        [28912.291, 0.19537783, 7.25, 8.4884205, 23],
        [219225.7, 1.1499691e-03, 7.25, 0.41683516, 52],
        [16988.646, 0.68675536, 7.25, 185342.64, 41],
        [620324.25, 2.5425153e-03, 7.25, 23404.266, 31],
        [520308.56, 0.06314382, 7.25, 8.359345e-03, 37],
        [10131.041, 0.018072622, 7.25, 4.3677273, 14],
        [121040.95, 9.368826e-03, 7.25, 7423.684, .nan],
        [16356.958, 3.241446e-03, 7.25, 81570.69, .nan],
        [32802.723, 0.21935543, 7.25, 457156.47, 31],
        [68201.21, 0.5540816, 7.25, 0.14671956, 36],
        [80766.68, 0.15367886, 7.25, 106079.55, 38],
        [86356.13, 0.06321998, 7.25, 1794.0522, 41],
        [716198.5, 0.13625787, 7.25, 4.1098753e-03, 52],
        [32926.242, 0.04057568, 7.25, 0.07864291, 40],
        [23756.389, 0.04729291, 7.25, 0.049914632, 37],
        [219291.08, 0.52269894, 7.25, 4.9718097e-03, 46],
        [782055.2, 7.0456527e-03, 7.25, 1537.0563, 65],
        [700844.6, 4.641322e-03, 7.25, 0.6183952, 36],
        [576102.8, 0.69327354, 7.25, 1682.5167, 46],
        [13449.663, 0.6750719, 7.25, 5.4372163e-03, 21],
        [747123.25, 0.026791152, 7.25, 69324.84, .nan],
        [198829.47, 0.25254223, 7.25, 1820.3643, 48],
        [553492.44, 0.16972661, 7.25, 10951.436, 56],
        [65493.31, 0.70436597, 7.25, 287.09872, 39],
        [27465.018, 1.7583683e-03, 7.25, 13.168324, 27]]
    static var features: [Float] { rows.flatMap { $0 } }

    /// (count, missing, mean, M2, min, max) per feature, from NumPy.
    static let expected: [(Int, Int, Double, Double, Double, Double)] = [
        (30, 0, 246318.85305989583, 2442894751679.254, 10131.041015625, 782538.8125),
        (30, 0, 0.19371580807492136, 1.7064188490150862, 0.0011499690590426326, 0.7043659687042236),
        (30, 0, 7.25, 0.0, 7.25, 7.25),
        (30, 0, 35716.33681072436, 243207348106.59283, 0.004109875299036503, 457156.46875),
        (26, 4, 39.92307692307692, 3329.846153846154, 14.0, 65.0),
    ]

    static func close(_ a: Double, _ b: Double, relative: Double = 1e-12) -> Bool {
        a == b || abs(a - b) <= relative * max(abs(a), abs(b))
    }

    static func matchesNumPy(_ stats: [FeatureStatistics], relative: Double = 1e-12) -> Bool {
        stats.count == expected.count && zip(stats, expected).allSatisfy { s, e in
            s.count == e.0 && s.missingCount == e.1 && close(s.mean, e.2, relative: relative)
                && close(s.m2, e.3, relative: relative) && s.min == e.4 && s.max == e.5
        }
    }

    @Test func onePassOverTheMatrixMatchesNumPy() {
        let stats = FeatureStatistics.compute(features: Self.features, featureCount: 5)
        #expect(Self.matchesNumPy(stats), "\(stats)")
        // The constant column: M2 exactly 0, so its scale is 1.
        #expect(stats[2].m2 == 0 && stats[2].mean == 7.25)
        // The same through a Dataset, and one column on its own.
        let dataset = Dataset(featureCount: 5, features: Self.features, labels: Array(repeating: 0, count: 30))
        #expect(FeatureStatistics.compute(dataset) == stats)
        #expect(FeatureStatistics(values: Self.rows.map { $0[4] }) == stats[4])
    }

    @Test func mergingThreePartitionsGivesTheStatisticsOfTheWhole() {
        let parts = [0..<7, 7..<19, 19..<30].map { range in
            FeatureStatistics.compute(features: Array(Self.rows[range].joined()), featureCount: 5)
        }
        // f3 of each part, from NumPy too.
        let f3: [(Int, Double, Double)] = [(7, 17585.28439131379, 12521228284.921076), (12, 71897.99593850807, 199824806215.9228),
                                           (11, 7783.378392767034, 4268066860.258753)]
        for (part, e) in zip(parts, f3) {
            #expect(part[3].count == e.0 && Self.close(part[3].mean, e.1) && Self.close(part[3].m2, e.2))
        }
        let merged = FeatureStatistics.merged(parts)
        #expect(Self.matchesNumPy(merged), "\(merged)")
        // Any order, pairwise by hand, and with empty parts: the same up to rounding.
        let byHand = parts[2].indices.map { parts[2][$0].merged(with: parts[0][$0]).merged(with: parts[1][$0]) }
        #expect(Self.matchesNumPy(byHand))
        let withEmpty = FeatureStatistics.merged([Array(repeating: .empty, count: 5)] + parts + [Array(repeating: .empty, count: 5)])
        #expect(Self.matchesNumPy(withEmpty))
        #expect(FeatureStatistics.merged([]) == [])
        // One value per part: 30 singletons merge to the whole.
        let singletons = Self.rows.map { FeatureStatistics.compute(features: $0, featureCount: 5) }
        #expect(Self.matchesNumPy(FeatureStatistics.merged(singletons), relative: 1e-11))
    }

    @Test func missingValuesAreCountedNotAveraged() {
        let s = FeatureStatistics(values: [Float.nan, 1, .infinity, 3, -.infinity, .nan])
        #expect(s.count == 2 && s.missingCount == 4 && s.mean == 2 && s.m2 == 2 && s.min == 1 && s.max == 3)
        let none = FeatureStatistics(values: [Double.nan, .nan])
        #expect(none.count == 0 && none.missingCount == 2 && none.mean == 0 && none.m2 == 0 && none.isEmpty)
        #expect(none.variance == 0 && none.sampleVariance == 0)
        // Merging with a column that has no values adds its missing count and nothing else.
        let merged = s.merged(with: none)
        #expect(merged.count == 2 && merged.missingCount == 6 && merged.mean == 2 && merged.min == 1)
        #expect(none.merged(with: s) == merged)
    }

    /// Values 1e9 + small offsets: the naive Σx² − n·mean² loses every digit here (1e18 against an M2 of 0.2);
    /// Welford and Chan's merge keep it. NumPy: mean 1000000000.11325, M2 0.22586149677134415, var 0.02823268709641802.
    @Test func aLargeOffsetLosesNoPrecision() {
        let values: [Double] = [0.001, 0.002, 0.004, 0.008, 0.016, 0.5, 0.25, 0.125].map { 1e9 + $0 }
        let whole = FeatureStatistics(values: values)
        #expect(Self.close(whole.mean, 1000000000.11325, relative: 1e-15))
        #expect(Self.close(whole.m2, 0.22586149677134415, relative: 1e-7))
        #expect(Self.close(whole.variance, 0.02823268709641802, relative: 1e-7))
        let merged = FeatureStatistics(values: values[0..<3]).merged(with: FeatureStatistics(values: values[3...]))
        #expect(Self.close(merged.m2, 0.22586149677134415, relative: 1e-7))
    }

    @Test func varianceFlavours() {
        let s = FeatureStatistics(values: [Double](arrayLiteral: 2, 4, 4, 4, 5, 5, 7, 9))
        #expect(s.variance == 4 && s.standardDeviation == 2)     // np.var(ddof=0)
        #expect(Self.close(s.sampleVariance, 32.0 / 7))           // np.var(ddof=1)
    }

    @Test func untrustedStatisticsAreChecked() throws {
        for good in FeatureStatistics.compute(features: Self.features, featureCount: 5) + [.empty] { try good.validate() }
        let bad: [FeatureStatistics] = [
            .init(count: -1, missingCount: 0, mean: 0, m2: 0, min: 0, max: 0),
            .init(count: 2, missingCount: 0, mean: .nan, m2: 0, min: 0, max: 1),
            .init(count: 2, missingCount: 0, mean: 0.5, m2: -1, min: 0, max: 1),
            .init(count: 2, missingCount: 0, mean: 5, m2: 0, min: 0, max: 1),        // mean outside [min, max]
            .init(count: 2, missingCount: 0, mean: 0.5, m2: 3, min: 0, max: 1),      // more spread than [0, 1] allows
            .init(count: 0, missingCount: 3, mean: 1, m2: 0, min: .infinity, max: -.infinity),
        ]
        for b in bad { #expect(throws: FeatureStatisticsError.self) { try b.validate() } }
    }

    @Test func codableLeavesNoInfinityForAnEmptyColumn() throws {
        let stats = FeatureStatistics.compute(features: Self.features, featureCount: 5) + [.empty]
        let json = try JSONEncoder().encode(stats)
        #expect(try JSONDecoder().decode([FeatureStatistics].self, from: json) == stats)
    }
}

@Suite struct StandardizationTests {
    /// NumPy: stds = sqrt(M2 / n) (1 for the constant column); ((X - mean) / std).astype(float32), rows 0, 2, 29.
    static let expectedRows: [Int: [Float]] = [
        0: [-0.7519499659538269, 0.19105643033981323, 0.0, 0.9491412043571472, 1.2438910007476807],
        2: [-0.7793880701065063, 0.09775589406490326, 0.0, -0.3965570032596588, .nan],
        29: [-0.7669417858123779, -0.8048644661903381, 0.0, -0.39653274416923523, -1.141932725906372],
    ]
    static let expectedScales: [Double] = [285359.11595036724, 0.2384966001864657, 1.0, 90038.38960994968, 11.316846111755686]

    @Test func fromStatisticsMatchesNumPyAndInverts() {
        let original = FeatureStatisticsTests.features
        let standardization = Standardization(statistics: FeatureStatistics.compute(features: original, featureCount: 5))
        #expect(zip(standardization.scales, Self.expectedScales).allSatisfy { FeatureStatisticsTests.close($0, $1) })
        var x = original
        standardization.apply(to: &x, featureCount: 5)
        for (row, expected) in Self.expectedRows {
            let got = Array(x[(row * 5)..<(row * 5 + 5)])
            #expect(zip(got, expected).allSatisfy { $0.isNaN ? $1.isNaN : abs($0 - $1) <= 2 * $1.ulp }, "row \(row): \(got)")
        }
        // Each standardised column has mean 0 and population std 1 (the constant column: all 0).
        let after = FeatureStatistics.compute(features: x, featureCount: 5)
        for (j, s) in after.enumerated() {
            #expect(abs(s.mean) < 1e-6)
            #expect(j == 2 ? s.m2 == 0 : abs(s.standardDeviation - 1) < 1e-6)
        }
        standardization.invert(&x, featureCount: 5)
        #expect(zip(x, original).allSatisfy { $0.isNaN ? $1.isNaN : abs($0 - $1) <= 4 * max($1.ulp, Float(1e-7) * 2.9e5) })
    }

    @Test func fewValuesOrNoSpreadGiveScaleOne() {
        #expect(Standardization.scale(of: FeatureStatistics(values: [Double](arrayLiteral: 3))) == 1)
        #expect(Standardization.scale(of: .empty) == 1)
        #expect(Standardization.scale(of: FeatureStatistics(values: [Double](arrayLiteral: 3, 3, 3))) == 1)
        #expect(Standardization.scale(of: FeatureStatistics(values: [Double](arrayLiteral: 1, 3))) == 1)   // std 1
        #expect(Standardization.scale(of: FeatureStatistics(values: [Double](arrayLiteral: 0, 4))) == 2)
        let s = Standardization(statistics: [.empty, FeatureStatistics(values: [Double](arrayLiteral: 5, 5))])
        #expect(s.means == [0, 5] && s.scales == [1, 1])
    }

    @Test func statedStatisticsIdentityAndOverrides() throws {
        var x: [Float] = [10, 1, 20, 2]
        let stated = try Standardization(means: [15, 1.5], scales: [5, 0.5])
        stated.apply(to: &x, featureCount: 2)
        #expect(x == [-1, -1, 1, 1])
        let identity = Standardization.identity(featureCount: 2)
        #expect(identity.isIdentity && !stated.isIdentity)
        var y: [Float] = [3, .nan]
        identity.apply(to: &y, featureCount: 2)
        #expect(y[0] == 3 && y[1].isNaN)

        let fixed = try stated.overriding(["b": .init(mean: 0, scale: 2)], featureNames: ["a", "b"])
        #expect(fixed.means == [15, 0] && fixed.scales == [5, 2])
        #expect(throws: StandardizationError.unknownFeature("c", features: ["a", "b"])) {
            try stated.overriding(["c": .init(mean: 0, scale: 1)], featureNames: ["a", "b"])
        }
        #expect(throws: StandardizationError.invalidScale(feature: 0, value: 0)) { try Standardization(means: [0], scales: [0]) }
        #expect(throws: StandardizationError.invalidMean(feature: 0, value: .infinity)) { try Standardization(means: [.infinity], scales: [1]) }
        #expect(throws: StandardizationError.countMismatch(means: 1, scales: 2)) { try Standardization(means: [0], scales: [1, 1]) }

        // A JSON file of fixed statistics decodes straight into the overrides; a decoded standardisation is checked.
        let file = #"{"income": {"mean": 52000, "scale": 15000}}"#
        let overrides = try JSONDecoder().decode([String: Standardization.Scaling].self, from: Data(file.utf8))
        #expect(overrides["income"] == .init(mean: 52000, scale: 15000))
        let roundTrip = try JSONDecoder().decode(Standardization.self, from: JSONEncoder().encode(stated))
        #expect(roundTrip == stated)
        #expect(throws: (any Error).self) {
            try JSONDecoder().decode(Standardization.self, from: Data(#"{"means": [0], "scales": [-1]}"#.utf8))
        }
    }

    @Test func imputationFillsOnlyMissingValues() {
        let data = Dataset(featureCount: 2, features: [1, .nan, .nan, 4, 5, 6], labels: [0, 1, 0])
        #expect(data.missingValueCount == 2)
        let filled = data.imputingMissing(with: [10, 20])
        #expect(filled.features == [1, 20, 10, 4, 5, 6] && filled.labels == data.labels && filled.missingValueCount == 0)
    }
}

@Suite struct LabelVocabularyTests {
    @Test func countsMergeAndGiveASortedVocabulary() throws {
        let a = LabelCounts(labels: ["declined", "approved", "approved"])
        let b = LabelCounts(["approved": 5, "review": 1])
        let c = LabelCounts()
        let merged = LabelCounts.merged([a, b, c])
        #expect(merged.counts == ["approved": 7, "declined": 1, "review": 1] && merged.total == 9)
        #expect(LabelCounts.merged([c, b, a]) == merged)
        #expect(merged.vocabulary.labels == ["approved", "declined", "review"])
        #expect(try merged.vocabulary.classIndices(for: ["review", "approved", "declined"]) == [2, 0, 1])
        #expect(merged.vocabulary.index(of: "nope") == nil)
        #expect(throws: LabelVocabularyError.negativeCount(label: "x", count: -1)) { try LabelCounts(["x": -1]).validate() }
    }

    @Test func theOrderIsByUTF8Bytes() {
        // Uppercase before lowercase, "é" (0xC3 0xA9) after every ASCII letter, a prefix before its extensions.
        let vocabulary = LabelVocabulary(sorting: ["yes", "no", "Yes", "é", "z", "ye", "No"])
        #expect(vocabulary.labels == ["No", "Yes", "no", "ye", "yes", "z", "é"])
        #expect(vocabulary.description == "['No', 'Yes', 'no', 'ye', 'yes', 'z', 'é']")
    }

    @Test func aGivenVocabularyIsCheckedAndAnUnknownLabelNamed() throws {
        let vocabulary = try LabelVocabulary(labels: ["approved", "declined"])
        #expect(throws: LabelVocabularyError.unknownLabel("review", occurrences: 2, vocabulary: ["approved", "declined"])) {
            try vocabulary.classIndices(for: ["approved", "review", "declined", "review"])
        }
        let message = "\(LabelVocabularyError.unknownLabel("review", occurrences: 2, vocabulary: ["approved", "declined"]))"
        #expect(message == "label 'review' is not in the federation's label vocabulary ['approved', 'declined'] (2 labels unknown)")
        #expect(throws: LabelVocabularyError.notSorted(previous: "declined", label: "approved")) {
            try LabelVocabulary(labels: ["declined", "approved"])
        }
        #expect(throws: LabelVocabularyError.duplicateLabel("a")) { try LabelVocabulary(labels: ["a", "a"]) }
        let decoded = try JSONDecoder().decode(LabelVocabulary.self, from: JSONEncoder().encode(vocabulary))
        #expect(decoded == vocabulary && decoded.index(of: "declined") == 1)
        #expect(throws: (any Error).self) { try JSONDecoder().decode(LabelVocabulary.self, from: Data(#"["b", "a"]"#.utf8)) }
    }
}
