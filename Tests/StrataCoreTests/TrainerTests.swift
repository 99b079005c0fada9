import Testing
@testable import StrataCore

@Suite struct ModelSpecTests {
    @Test func shapesAndCounts() {
        let spec = ModelSpec(kind: .softmaxRegression, featureCount: 60, outputCount: 10)
        #expect(spec.parameterCount == 610)
        #expect(spec.tensorShapes.map(\.name) == ["weight", "bias"])
        #expect(spec.tensorShapes.map(\.shape) == [[60, 10], [10]])
        #expect(spec.initialParameters() == [Float](repeating: 0, count: 610))
        #expect(ModelKind(rawValue: "softmax") == .softmaxRegression)
        #expect(ModelKind(rawValue: "linear") == .linearRegression)
    }

    @Test func datasetSubsetAndConcat() {
        let d = Dataset(featureCount: 2, features: [1, 2, 3, 4, 5, 6], labels: [0, 1, 2])
        let s = d.subset([2, 0])
        #expect(s.features == [5, 6, 1, 2])
        #expect(s.labels == [2, 0])
        let c = Dataset.concatenating([d, s], featureCount: 2)
        #expect(c.count == 5)
        #expect(c.features == [1, 2, 3, 4, 5, 6, 5, 6, 1, 2])
    }
}

@Suite struct GradientCheckTests {
    /// Central differences in Float (eps 1e-2 on a smooth loss) against the analytic gradient.
    func check(spec: ModelSpec, data: Dataset, parameters: [Float], indices: [Int]) {
        let (loss, gradient) = Trainer.lossAndGradient(spec: spec, parameters: parameters, data: data, indices: indices)
        #expect(loss.isFinite && loss > 0)
        let eps: Float = 1e-2
        var worst: Float = 0
        for k in 0..<spec.parameterCount {
            var plus = parameters, minus = parameters
            plus[k] += eps
            minus[k] -= eps
            let lp = Trainer.lossAndGradient(spec: spec, parameters: plus, data: data, indices: indices).loss
            let lm = Trainer.lossAndGradient(spec: spec, parameters: minus, data: data, indices: indices).loss
            let numeric = (lp - lm) / (2 * eps)
            let err = abs(numeric - gradient[k]) / max(1, abs(numeric))
            worst = max(worst, err)
        }
        #expect(worst < 2e-3, "worst relative gradient error \(worst)")
    }

    // Feature counts below, at and above the 8-lane SIMD width, with remainders; several class counts.
    @Test(arguments: [(5, 4), (8, 3), (11, 2), (17, 10)])
    func softmaxGradientMatchesFiniteDifferences(featureCount: Int, classes: Int) {
        let spec = ModelSpec(kind: .softmaxRegression, featureCount: featureCount, outputCount: classes)
        let data = randomDataset(kind: .softmaxRegression, count: 12, featureCount: featureCount, classes: classes, seed: 7)
        check(spec: spec, data: data, parameters: randomParameters(spec, seed: 8), indices: [0, 3, 4, 7, 11, 2, 3])
    }

    @Test(arguments: [1, 6, 13])
    func linearGradientMatchesFiniteDifferences(featureCount: Int) {
        let spec = ModelSpec(kind: .linearRegression, featureCount: featureCount, outputCount: 1)
        let data = randomDataset(kind: .linearRegression, count: 9, featureCount: featureCount, classes: 1, seed: 9)
        check(spec: spec, data: data, parameters: randomParameters(spec, seed: 10), indices: Array(0..<9))
    }

    @Test func evaluateLossMatchesLossAndGradient() {
        let spec = ModelSpec(kind: .softmaxRegression, featureCount: 9, outputCount: 3)
        let data = randomDataset(kind: .softmaxRegression, count: 20, featureCount: 9, classes: 3, seed: 12)
        let p = randomParameters(spec, seed: 13)
        let e = Trainer.evaluate(spec: spec, parameters: p, data: data)
        let l = Trainer.lossAndGradient(spec: spec, parameters: p, data: data, indices: 0..<20).loss
        #expect(approxEqual(e.loss, l, tolerance: 1e-5))
    }

    @Test func softmaxLossHandValue() {
        // One feature, two classes, zero weights: loss = log 2, gradient of b = p - onehot = (0.5, -0.5).
        let spec = ModelSpec(kind: .softmaxRegression, featureCount: 1, outputCount: 2)
        let data = Dataset(featureCount: 1, features: [2], labels: [1])
        let (loss, g) = Trainer.lossAndGradient(spec: spec, parameters: spec.initialParameters(), data: data, indices: [0])
        #expect(approxEqual(loss, 0.6931472))
        #expect(approxEqual(g, [1, -1, 0.5, -0.5]))
    }

    @Test func softmaxIsStableForHugeLogits() {
        let spec = ModelSpec(kind: .softmaxRegression, featureCount: 1, outputCount: 2)
        let data = Dataset(featureCount: 1, features: [1], labels: [0])
        // logits (1000, -1000): loss ~ 0; wrong label would give 2000.
        let (loss, g) = Trainer.lossAndGradient(spec: spec, parameters: [1000, -1000, 0, 0], data: data, indices: [0])
        #expect(loss == 0)
        #expect(g.allSatisfy { $0.isFinite })
        let (loss2, _) = Trainer.lossAndGradient(spec: spec, parameters: [-1000, 1000, 0, 0], data: data, indices: [0])
        #expect(approxEqual(loss2, 2000, tolerance: 1e-2))
    }

    @Test func emptyIndicesGiveZero() {
        let spec = ModelSpec(kind: .linearRegression, featureCount: 2, outputCount: 1)
        let data = Dataset(featureCount: 2, features: [1, 2], labels: [3])
        let (loss, g) = Trainer.lossAndGradient(spec: spec, parameters: [1, 1, 1], data: data, indices: [Int]())
        #expect(loss == 0 && g == [0, 0, 0])
    }
}

/// Two Gaussian-free, linearly separable classes per quadrant-like rule: y = argmax over 3 class directions.
func separableProblem(count: Int, seed: UInt64) -> Dataset {
    var g = SeededGenerator(seed: seed)
    let centers: [[Float]] = [[3, 0], [-3, 3], [-3, -3]]
    var x: [Float] = [], y: [Float] = []
    for i in 0..<count {
        let c = i % 3
        x.append(centers[c][0] + Float(g.nextNormal(standardDeviation: 0.5)))
        x.append(centers[c][1] + Float(g.nextNormal(standardDeviation: 0.5)))
        y.append(Float(c))
    }
    return Dataset(featureCount: 2, features: x, labels: y)
}

@Suite struct TrainingTests {
    let spec = ModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 3)

    @Test func softmaxTrainingReducesLossAndSeparates() {
        let train = separableProblem(count: 300, seed: 1)
        let test = separableProblem(count: 150, seed: 2)
        let before = Trainer.evaluate(spec: spec, parameters: spec.initialParameters(), data: test)
        #expect(approxEqual(before.loss, 1.0986123))   // log 3 at zero weights
        let result = Trainer.train(spec: spec, parameters: spec.initialParameters(), data: train,
                                   config: TrainingConfig(learningRate: 0.1, batchSize: 10, epochs: 5, seed: 3))
        #expect(result.steps == 150)
        #expect(result.sampleCount == 300)
        #expect(result.meanLoss < before.loss)
        let after = Trainer.evaluate(spec: spec, parameters: result.parameters, data: test)
        #expect(after.loss < 0.2)
        #expect(after.accuracy >= 0.99)
        #expect(after.meanSquaredError == 0)
    }

    @Test func lastBatchIsSmaller() {
        let train = separableProblem(count: 25, seed: 1)
        let r = Trainer.train(spec: spec, parameters: spec.initialParameters(), data: train,
                              config: TrainingConfig(batchSize: 10, epochs: 2))
        #expect(r.steps == 6)
    }

    @Test func linearRegressionRecoversCoefficients() {
        // y = 2 x0 - 3 x1 + 0.5 x2 + 1, noise-free.
        let lin = ModelSpec(kind: .linearRegression, featureCount: 3, outputCount: 1)
        var g = SeededGenerator(seed: 11)
        var x: [Float] = [], y: [Float] = []
        for _ in 0..<200 {
            let row = (0..<3).map { _ in Float(g.nextNormal()) }
            x += row
            y.append(2 * row[0] - 3 * row[1] + 0.5 * row[2] + 1)
        }
        let data = Dataset(featureCount: 3, features: x, labels: y)
        let r = Trainer.train(spec: lin, parameters: lin.initialParameters(), data: data,
                              config: TrainingConfig(learningRate: 0.05, batchSize: 10, epochs: 40, seed: 1))
        #expect(approxEqual(r.parameters, [2, -3, 0.5, 1], tolerance: 1e-3), "\(r.parameters)")
        let e = Trainer.evaluate(spec: lin, parameters: r.parameters, data: data)
        #expect(e.meanSquaredError < 1e-5)
        #expect(approxEqual(e.loss, e.meanSquaredError / 2, tolerance: 1e-7))
        #expect(e.accuracy == 0)
    }

    @Test func linearEvaluateHandValues() {
        let lin = ModelSpec(kind: .linearRegression, featureCount: 1, outputCount: 1)
        let data = Dataset(featureCount: 1, features: [1, 2], labels: [3, 3])
        // y_hat = 1*x + 1 -> (2, 3); errors (-1, 0); MSE 0.5; loss 0.25; row losses (0.5, 0): squares 0.25.
        let e = Trainer.evaluate(spec: lin, parameters: [1, 1], data: data)
        #expect(e == Evaluation(sampleCount: 2, loss: 0.25, accuracy: 0, meanSquaredError: 0.5, lossSquares: 0.25))
    }

    @Test func trainingIsDeterministicForASeed() {
        let train = separableProblem(count: 97, seed: 5)
        let c = TrainingConfig(learningRate: 0.05, batchSize: 8, epochs: 3, seed: 42)
        let a = Trainer.train(spec: spec, parameters: spec.initialParameters(), data: train, config: c)
        let b = Trainer.train(spec: spec, parameters: spec.initialParameters(), data: train, config: c)
        #expect(a.parameters.map(\.bitPattern) == b.parameters.map(\.bitPattern))
        #expect(a.meanLoss.bitPattern == b.meanLoss.bitPattern)
        var c2 = c
        c2.seed = 43
        let d = Trainer.train(spec: spec, parameters: spec.initialParameters(), data: train, config: c2)
        #expect(d.parameters != a.parameters)
    }

    @Test func proximalTermPullsTowardsStart() {
        let train = separableProblem(count: 300, seed: 1)
        let start = randomParameters(spec, seed: 4)
        let plain = Trainer.train(spec: spec, parameters: start, data: train,
                                  config: TrainingConfig(learningRate: 0.1, epochs: 3, seed: 1))
        let prox = Trainer.train(spec: spec, parameters: start, data: train,
                                 config: TrainingConfig(learningRate: 0.1, epochs: 3, seed: 1, proximalMu: 1))
        let dPlain = UpdateValidation.l2Norm(zip(plain.parameters, start).map { $0 - $1 })
        let dProx = UpdateValidation.l2Norm(zip(prox.parameters, start).map { $0 - $1 })
        #expect(dProx < 0.8 * dPlain, "prox \(dProx) plain \(dPlain)")
    }

    @Test func zeroEpochsOrEmptyDataLeaveParametersAlone() {
        let p = randomParameters(spec, seed: 2)
        let r = Trainer.train(spec: spec, parameters: p, data: separableProblem(count: 10, seed: 1),
                              config: TrainingConfig(epochs: 0))
        #expect(r.parameters == p && r.steps == 0)
        let empty = Dataset(featureCount: 2, features: [], labels: [])
        let r2 = Trainer.train(spec: spec, parameters: p, data: empty, config: TrainingConfig(epochs: 3))
        #expect(r2.parameters == p && r2.sampleCount == 0)
        #expect(Trainer.evaluate(spec: spec, parameters: p, data: empty).sampleCount == 0)
    }
}
