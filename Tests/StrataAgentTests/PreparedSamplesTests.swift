import StrataCore
import StrataData
import StrataStore
import StrataWire
import Testing
@testable import StrataAgent

/// The rows as the model sees them, before and after the federation's preprocessing arrives.
@Suite struct PreparedSamplesTests {
    let textLabels = LoadedSamples(train: Dataset(featureCount: 1, features: [1, 2], labels: [.nan, .nan]),
                                   test: Dataset(featureCount: 1, features: [3], labels: [.nan]),
                                   columns: [FeatureColumn(name: "x", kind: .real, declaredType: "REAL", missingCount: 0)],
                                   labelColumn: "risk", labelKind: .strings,
                                   trainLabelNames: ["declined", "approved"], testLabelNames: ["approved"])
    let spec = ModelSpec(kind: .softmaxRegression, featureCount: 1, outputCount: 2)

    @Test func textLabelsWaitForTheFederationsVocabulary() throws {
        var prepared = PreparedSamples(raw: textLabels)
        #expect(throws: AgentError.self) { try prepared.ready() }
        #expect(prepared.summary().labels == .text(LabelCounts(["declined": 1, "approved": 2])))
        try prepared.apply(WirePreprocessing(features: [WireColumnTransform(center: 2, scale: 0.5, fill: 2)], labels: ["approved", "declined"]), spec: spec)
        let ready = try prepared.ready()
        #expect(ready.train.labels == [1, 0] && ready.test.labels == [0])
        #expect(ready.train.features == [-2, 0] && ready.test.features == [2])
        // A vocabulary without one of the agent's labels is refused, naming it.
        var other = PreparedSamples(raw: textLabels)
        #expect(throws: (any Error).self) {
            try other.apply(WirePreprocessing(features: [.identity], labels: ["approved", "review"]), spec: spec)
        }
    }

    @Test func missingValuesTakeTheFederatedFillOnceItArrives() throws {
        let samples = LoadedSamples(train: Dataset(featureCount: 2, features: [1, .nan, 3, 10, .nan, 20], labels: [0, 1, 0]),
                                    test: Dataset(featureCount: 2, features: [.nan, .nan], labels: [1]),
                                    columns: [FeatureColumn(name: "a", kind: .integer, declaredType: nil, missingCount: 2),
                                              FeatureColumn(name: "b", kind: .real, declaredType: nil, missingCount: 2)],
                                    labelKind: .numeric(.integer), nullPolicy: .impute)
        var prepared = PreparedSamples(raw: samples)
        // Before: this agent's own training means.
        #expect(try prepared.ready().train.features == [1, 15, 3, 10, 2, 20])
        // The statistics count the missing values instead of filling them.
        #expect(prepared.summary().features.map(\.missingCount) == [1, 1])
        try prepared.apply(WirePreprocessing(features: [WireColumnTransform(center: 0, scale: 1, fill: 100),
                                                        WireColumnTransform(center: 10, scale: 2, fill: -4)]),
                           spec: ModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 2))
        #expect(try prepared.ready().train.features == [1, -7, 3, 0, 100, 5])
        #expect(try prepared.ready().test.features == [100, -7])
    }

    @Test func aRegressionTargetIsStandardised() throws {
        let samples = LoadedSamples(train: Dataset(featureCount: 1, features: [1, 2], labels: [100_000, 300_000]),
                                    test: Dataset(featureCount: 1, features: [3], labels: [200_000]),
                                    columns: [FeatureColumn(name: "x", kind: .real, declaredType: nil, missingCount: 0)],
                                    labelKind: .numeric(.real))
        var prepared = PreparedSamples(raw: samples)
        try prepared.apply(WirePreprocessing(features: [.identity], target: WireColumnTransform(center: 200_000, scale: 100_000, fill: 0)),
                           spec: ModelSpec(kind: .linearRegression, featureCount: 1, outputCount: 1))
        #expect(try prepared.ready().train.labels == [-1, 1] && prepared.ready().test.labels == [0])
    }
}
