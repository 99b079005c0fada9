import Foundation
import Testing
@testable import StrataCore

/// An evaluation computed from a model's outputs (what an external trainer returns) equals the built-in
/// evaluation of the same model on the same rows: loss, accuracy and every statistic, for each kind.
@Suite struct OutputEvaluationTests {
    static func data(classes: Int, regression: Bool) -> Dataset {
        var rng = SeededGenerator(seed: 11)
        var features: [Float] = [], labels: [Float] = []
        for i in 0..<257 {
            let a = Float(rng.nextUniform() * 4 - 2), b = Float(rng.nextUniform() * 4 - 2)
            features += [a, b]
            labels.append(regression ? a * a - b + Float(rng.nextUniform()) : Float(i % classes))
        }
        return Dataset(featureCount: 2, features: features, labels: labels)
    }

    /// The model's outputs on every row, row-major, as the built-in models compute them.
    static func outputs(spec: ModelSpec, parameters: [Float], data: Dataset) -> [Float] {
        if let mlp = spec.mlp { return mlp.outputs(parameters: parameters, data: data) }
        let cm = Trainer.classMajor(parameters, spec: spec)
        var out = [Float](repeating: 0, count: data.count * spec.outputCount)
        cm.withUnsafeBufferPointer { w in
            data.features.withUnsafeBufferPointer { x in
                out.withUnsafeMutableBufferPointer { z in
                    for i in 0..<data.count {
                        Trainer.logits(row: x.baseAddress! + i * spec.featureCount, weights: w.baseAddress!, featureCount: spec.featureCount,
                                       outputCount: spec.outputCount, into: z.baseAddress! + i * spec.outputCount)
                    }
                }
            }
        }
        return out
    }

    /// Every built-in kind, on two features: both softmax shapes, linear, and an MLP of each output.
    static let everyKind = [
        ModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 3),
        ModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 2),
        ModelSpec(kind: .linearRegression, featureCount: 2, outputCount: 1),
        ModelSpec(kind: .mlp, featureCount: 2, outputCount: 2, hidden: [6]),
        ModelSpec(kind: .mlp, featureCount: 2, outputCount: 1, hidden: [5], activation: .tanh),
    ]

    @Test(arguments: OutputEvaluationTests.everyKind)
    func matchesTheBuiltInEvaluation(spec: ModelSpec) throws {
        let data = Self.data(classes: spec.outputCount, regression: !spec.isClassifier)
        var rng = SeededGenerator(seed: 5)
        let parameters = spec.initialParameters(seed: 3).map { $0 + Float(rng.nextUniform() - 0.5) }
        let target = ColumnTransform(center: 3, scale: 2.5, fill: 0)
        let (evaluation, statistics) = try Trainer.evaluate(outputs: Self.outputs(spec: spec, parameters: parameters, data: data),
                                                            spec: spec, labels: data.labels, target: target)
        let builtIn = Trainer.evaluate(spec: spec, parameters: parameters, data: data)
        #expect(evaluation.sampleCount == builtIn.sampleCount)
        #expect(abs(evaluation.loss - builtIn.loss) <= 1e-5 * max(1, builtIn.loss), "\(evaluation) vs \(builtIn)")
        #expect(evaluation.accuracy == builtIn.accuracy)
        #expect(statistics == Trainer.evaluationStatistics(spec: spec, parameters: parameters, data: data, target: target))
        // And they pass the coordinator's consistency check against the answer they come with.
        try statistics.validate(model: spec, rows: Int64(data.count), reportedAccuracy: Double(evaluation.accuracy),
                                reportedLoss: Double(evaluation.loss), targetScale: target.scale)
    }

    @Test func wrongShapesAndNonFiniteOutputsAreRefused() {
        let spec = ModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 3)
        #expect(throws: OutputEvaluationError.shape(expected: [2, 3], got: 5)) {
            _ = try Trainer.evaluate(outputs: [0, 1, 2, 3, 4], spec: spec, labels: [0, 1])
        }
        #expect(throws: OutputEvaluationError.notFinite(row: 1)) {
            _ = try Trainer.evaluate(outputs: [0, 1, 2, 3, .nan, 4], spec: spec, labels: [0, 1])
        }
    }
}
