import Foundation
import Testing
@testable import StrataCore

/// The built-in MLP: its gradient against finite differences, its SGD against an independent NumPy
/// implementation (Deploy/bench/mlp_numpy.py, run here on the same data, order and initial parameters), and
/// that it learns what no linear model can.
@Suite struct MLPTests {
    /// Two classes on concentric rings (radius < 1 or > 1.5, plus noise): no line separates them.
    static func rings(count: Int, seed: UInt64) -> Dataset {
        var rng = SeededGenerator(seed: seed)
        var features: [Float] = [], labels: [Float] = []
        for i in 0..<count {
            let outer = i % 2 == 1
            let radius = outer ? 1.5 + rng.nextUniform() : rng.nextUniform()
            let angle = rng.nextUniform() * 2 * Double.pi
            features += [Float(radius * cos(angle)), Float(radius * sin(angle))]
            labels.append(outer ? 1 : 0)
        }
        return Dataset(featureCount: 2, features: features, labels: labels)
    }

    @Test func shapesNamesAndSeededInitialisation() {
        let mlp = MLP(featureCount: 4, hidden: [8, 3], outputCount: 5)
        #expect(mlp.tensorShapes.map(\.name) == ["layer1.weight", "layer1.bias", "layer2.weight", "layer2.bias", "layer3.weight", "layer3.bias"])
        #expect(mlp.tensorShapes.map(\.shape) == [[4, 8], [8], [8, 3], [3], [3, 5], [5]])
        #expect(mlp.parameterCount == 4 * 8 + 8 + 8 * 3 + 3 + 3 * 5 + 5)
        let a = mlp.initialParameters(seed: 3), b = mlp.initialParameters(seed: 3), c = mlp.initialParameters(seed: 4)
        #expect(a == b && a != c && a.count == mlp.parameterCount)
        // He-uniform for relu: |w| ≤ √(6 / fan-in) for layer 1, biases zero.
        let limit = Float((6.0 / 4).squareRoot())
        #expect(a[0..<32].allSatisfy { abs($0) <= limit } && a[32..<40].allSatisfy { $0 == 0 })
        #expect(Set(a[0..<32]).count == 32)   // no two hidden units start alike
    }

    @Test(arguments: [MLP.Activation.tanh, .relu], [MLP.Output.classes, .regression])
    func gradientMatchesFiniteDifferences(activation: MLP.Activation, output: MLP.Output) {
        let data = Self.rings(count: 12, seed: 5)
        let targets = output == .regression ? Dataset(featureCount: 2, features: data.features, labels: data.labels.map { $0 * 2 - 0.5 }) : data
        let mlp = MLP(featureCount: 2, hidden: [5, 4], outputCount: output == .classes ? 3 : 1, activation: activation, output: output)
        let p = mlp.initialParameters(seed: 9)
        let indices = Array(0..<12)
        let (_, gradient) = mlp.lossAndGradient(parameters: p, data: targets, indices: indices)
        var worst: Float = 0
        for k in stride(from: 0, to: p.count, by: 3) {
            var plus = p, minus = p
            plus[k] += 1e-2
            minus[k] -= 1e-2
            let numeric = (mlp.lossAndGradient(parameters: plus, data: targets, indices: indices).loss
                           - mlp.lossAndGradient(parameters: minus, data: targets, indices: indices).loss) / 2e-2
            worst = max(worst, abs(numeric - gradient[k]) / max(0.05, abs(numeric)))
        }
        #expect(worst < 0.05, "largest relative difference \(worst)")
    }

    @Test(arguments: [(MLP.Activation.relu, MLP.Output.classes, Float(0)), (.tanh, .regression, 0.1)])
    func trainingMatchesNumPy(activation: MLP.Activation, output: MLP.Output, mu: Float) throws {
        let data = Self.rings(count: 203, seed: 1)   // 203: the last batch of each epoch is short
        let mlp = MLP(featureCount: 2, hidden: [16, 8], outputCount: output == .classes ? 2 : 1, activation: activation, output: output)
        let initial = mlp.initialParameters(seed: 2)
        let config = TrainingConfig(learningRate: 0.05, batchSize: 10, epochs: 6, seed: 7, proximalMu: mu)
        let trained = mlp.train(parameters: initial, data: data, config: config)
        #expect(trained.steps == 6 * 21 && trained.sampleCount == 203)

        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("strata-mlp-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func write<T: BitwiseCopyable>(_ values: [T], _ name: String) throws {
            try values.withUnsafeBytes { try Data($0).write(to: directory.appendingPathComponent(name)) }
        }
        try write(data.features, "features.f32")
        try write(data.labels, "labels.f32")
        try write(initial, "initial.f32")
        try write((0..<6).flatMap { Trainer.sampleOrder(count: 203, seed: 7, epoch: $0).map { Int32($0) } }, "order.i32")
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../Deploy/bench/mlp_numpy.py").standardized.path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, "--dir", directory.path, "--samples", "203", "--widths",
                             mlp.widths.map(String.init).joined(separator: ","), "--activation", activation.rawValue,
                             "--output", output.rawValue, "--epochs", "6", "--batch", "10", "--lr", "0.05", "--mu", "\(mu)"]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "python3 with NumPy is needed (.ci/run installs it): \(script) failed")
        let reference = try Data(contentsOf: directory.appendingPathComponent("parameters.f32")).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        try #require(reference.count == trained.parameters.count)
        let largest = trained.parameters.map(abs).max() ?? 1
        let difference = zip(trained.parameters, reference).map { abs($0 - $1) }.max() ?? 0
        #expect(difference <= 1e-4 * max(1, largest), "max |Swift − NumPy| \(difference), largest parameter \(largest)")
        let lossLine = text.split(separator: "\n").first { $0.hasPrefix("mean_loss ") }
        let numpyLoss = lossLine.flatMap { Double($0.dropFirst("mean_loss ".count)) } ?? .nan
        #expect(abs(Double(trained.meanLoss) - numpyLoss) <= 1e-4 * max(1, numpyLoss), "mean loss \(trained.meanLoss) vs NumPy \(numpyLoss)")
        #expect(trained.parameters != initial)
    }

    /// The reason the MLP exists: rings that softmax regression cannot separate.
    @Test func learnsWhatNoLinearModelCan() {
        let train = Self.rings(count: 1000, seed: 11), test = Self.rings(count: 400, seed: 12)
        let mlp = MLP(featureCount: 2, hidden: [16, 16], outputCount: 2)
        let config = TrainingConfig(learningRate: 0.05, batchSize: 10, epochs: 40, seed: 1)
        let trained = mlp.train(parameters: mlp.initialParameters(seed: 1), data: train, config: config)
        let mlpAccuracy = mlp.evaluate(parameters: trained.parameters, data: test).accuracy
        let spec = ModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 2)
        let linear = Trainer.train(spec: spec, parameters: spec.initialParameters(), data: train, config: config)
        let linearAccuracy = Trainer.evaluate(spec: spec, parameters: linear.parameters, data: test).accuracy
        #expect(mlpAccuracy >= 0.95, "MLP accuracy \(mlpAccuracy)")
        #expect(linearAccuracy <= 0.7, "softmax regression accuracy \(linearAccuracy)")
        let before = mlp.evaluate(parameters: mlp.initialParameters(seed: 1), data: test).loss
        #expect(mlp.evaluate(parameters: trained.parameters, data: test).loss < before / 4)
    }
}

/// `--model mlp --regression`: an MLP spec of one output predicts a number, trained and evaluated like a linear
/// model's target (half the squared error, regression statistics).
@Suite struct MLPRegressionSpecTests {
    @Test func oneOutputIsARegression() {
        let spec = ModelSpec(kind: .mlp, featureCount: 2, outputCount: 1, hidden: [8])
        #expect(ModelSpec.isValid(kind: .mlp, featureCount: 2, outputCount: 1, hidden: [8]))
        #expect(!spec.isClassifier && spec.mlp?.output == .regression)
        #expect(ModelSpec(kind: .mlp, featureCount: 2, outputCount: 2, hidden: [8]).isClassifier)
        #expect(TargetMetric.rmse.problem(for: spec) == nil && TargetMetric.accuracy.problem(for: spec) != nil)
        // y = x0² + x1²: no linear model fits it; the MLP does, and its statistics are a regression's.
        var state: UInt64 = 7
        func uniform() -> Float {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Float(state >> 40) / Float(1 << 24) * 2 - 1
        }
        var features: [Float] = [], labels: [Float] = []
        for _ in 0..<400 {
            let a = uniform(), b = uniform()
            features += [a, b]
            labels.append(a * a + b * b - 0.66)
        }
        let data = Dataset(featureCount: 2, features: features, labels: labels)
        let before = Trainer.evaluate(spec: spec, parameters: spec.initialParameters(seed: 3), data: data)
        let trained = Trainer.train(spec: spec, parameters: spec.initialParameters(seed: 3), data: data,
                                    config: TrainingConfig(learningRate: 0.05, batchSize: 10, epochs: 200, seed: 1))
        let after = Trainer.evaluate(spec: spec, parameters: trained.parameters, data: data)
        #expect(after.meanSquaredError < 0.1 * before.meanSquaredError, "MSE \(before.meanSquaredError) → \(after.meanSquaredError)")
        guard case .regression(let sums) = Trainer.evaluationStatistics(spec: spec, parameters: trained.parameters, data: data) else {
            Issue.record("an MLP of one output gave classification statistics"); return
        }
        #expect(sums.count == 400 && abs(sums.sumSquaredResidual / 400 - Double(after.meanSquaredError)) < 1e-3)
    }
}
