import Logging
import StrataCore
import StrataStore
import Testing
@testable import StrataAgent

/// What the agent does with loaded samples before it connects, with what protocol v1 offers.
@Suite struct PrepareSamplesTests {
    let logger = Logger(label: "test")

    @Test func textLabelsAreRefusedUntilTheCoordinatorSendsAVocabulary() throws {
        let samples = LoadedSamples(train: Dataset(featureCount: 1, features: [1, 2], labels: [.nan, .nan]),
                                    test: Dataset(featureCount: 1, features: [3], labels: [.nan]),
                                    columns: [FeatureColumn(name: "x", kind: .real, declaredType: "REAL", missingCount: 0)],
                                    labelColumn: "risk", labelKind: .strings,
                                    trainLabelNames: ["declined", "approved"], testLabelNames: ["approved"])
        do {
            _ = try AgentService.prepare(samples, database: "d", logger: logger)
            Issue.record("text labels were accepted")
        } catch let error as AgentError {
            #expect("\(error)".hasPrefix("the label column 'risk' holds text labels ('approved', 'declined'); this coordinator (protocol v1) sends no federation-wide label vocabulary"), "\(error)")
        }
        // Mapped through the federation's vocabulary, the same samples are accepted.
        let mapped = try samples.mappingLabels(through: LabelVocabulary(labels: ["approved", "declined"]))
        #expect(try AgentService.prepare(mapped, database: "d", logger: logger).train.labels == [1, 0])
    }

    @Test func missingValuesAreFilledWithThisAgentsTrainingMeans() throws {
        let samples = LoadedSamples(train: Dataset(featureCount: 2, features: [1, .nan, 3, 10, .nan, 20], labels: [0, 1, 0]),
                                    test: Dataset(featureCount: 2, features: [.nan, .nan], labels: [1]),
                                    columns: [FeatureColumn(name: "a", kind: .integer, declaredType: nil, missingCount: 2),
                                              FeatureColumn(name: "b", kind: .real, declaredType: nil, missingCount: 2)],
                                    labelKind: .numeric(.integer), nullPolicy: .impute)
        let prepared = try AgentService.prepare(samples, database: "d", logger: logger)
        #expect(prepared.train.features == [1, 15, 3, 10, 2, 20] && prepared.test.features == [2, 15])
        #expect(prepared.isReadyForTraining)
    }
}
