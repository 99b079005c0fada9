@testable import StrataCore

/// Small random dataset for softmax (labels uniform over classes) or linear (labels normal).
func randomDataset(kind: ModelKind, count: Int, featureCount: Int, classes: Int, seed: UInt64) -> Dataset {
    var g = SeededGenerator(seed: seed)
    let x = (0..<(count * featureCount)).map { _ in Float(g.nextNormal()) }
    let y: [Float] = (0..<count).map { _ in
        kind == .softmaxRegression ? Float(g.nextInt(below: classes)) : Float(g.nextNormal())
    }
    return Dataset(featureCount: featureCount, features: x, labels: y)
}

func randomParameters(_ spec: ModelSpec, seed: UInt64, scale: Double = 0.5) -> [Float] {
    var g = SeededGenerator(seed: seed)
    return (0..<spec.parameterCount).map { _ in Float(g.nextNormal(standardDeviation: scale)) }
}

func approxEqual(_ a: Float, _ b: Float, tolerance: Float = 1e-5) -> Bool {
    abs(a - b) <= tolerance
}

func approxEqual(_ a: [Float], _ b: [Float], tolerance: Float = 1e-5) -> Bool {
    a.count == b.count && zip(a, b).allSatisfy { abs($0 - $1) <= tolerance }
}
