#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// FedProx Synthetic(alpha, beta) generator settings (Li et al., MLSys 2020), deterministic for a seed.
public struct SyntheticConfig: Sendable, Hashable, Codable {
    /// Standard deviation of u_k (model heterogeneity).
    public var alpha: Double
    /// Standard deviation of B_k (feature heterogeneity).
    public var beta: Double
    /// Synthetic-IID: one shared W, b ~ N(0, 1) and v_k = 0 (alpha and beta are then unused).
    public var iid: Bool
    public var clientCount: Int
    public var featureCount: Int
    public var classCount: Int
    /// Fraction of each client's samples held out for test (Strata uses 80/20; the paper 90/10).
    public var testFraction: Double
    /// Each client's test set holds this many times its held-out rows: the held-out rows and fresh draws from
    /// the same client's distribution. The training rows do not change. More test rows measure a model's
    /// accuracy finer (222 test rows for 10 clients move accuracy in steps of 0.45 points).
    public var testMultiple: Int
    public var seed: UInt64

    public init(alpha: Double = 1, beta: Double = 1, iid: Bool = false, clientCount: Int = 30, featureCount: Int = 60,
                classCount: Int = 10, testFraction: Double = 0.2, testMultiple: Int = 1, seed: UInt64 = 1) {
        self.alpha = alpha
        self.beta = beta
        self.iid = iid
        self.clientCount = clientCount
        self.featureCount = featureCount
        self.classCount = classCount
        self.testFraction = testFraction
        self.testMultiple = testMultiple
        self.seed = seed
    }
}

public struct SyntheticClientData: Sendable {
    public var clientIndex: Int
    public var train: Dataset
    public var test: Dataset

    public init(clientIndex: Int, train: Dataset, test: Dataset) {
        self.clientIndex = clientIndex
        self.train = train
        self.test = test
    }
}

public enum SyntheticGenerator {
    /// Number of samples drawn for client k before any cap: int(lognormal(4, 2)) + 50.
    public static let minimumSamplesPerClient = 50

    /// Generates `config.clientCount` clients. For client k (its own PRNG stream, derived from (seed, k), so
    /// client k's data does not depend on `clientCount`):
    /// n_k = int(lognormal(4, 2)) + 50, capped at `maxSamplesPerClient` if given; u_k ~ N(0, alpha),
    /// B_k ~ N(0, beta); W_k (f x c), b_k (c) entries ~ N(u_k, 1); v_k[j] ~ N(B_k, 1);
    /// x ~ N(v_k, diag(j^−1.2)), j = 1..f; y = argmax(x W_k + b_k) (first maximum on ties).
    /// IID: W, b ~ N(0, 1) drawn once from a separate stream, v_k = 0.
    /// Split: the n_k samples are shuffled with the client's stream; the last floor(testFraction · n_k)
    /// form the test set, the rest the training set; `testMultiple` − 1 times as many rows more, drawn after
    /// the split from the same client's distribution, join the test set.
    public static func generate(_ config: SyntheticConfig, maxSamplesPerClient: Int? = nil) -> [SyntheticClientData] {
        precondition(config.clientCount >= 0, "clientCount must be >= 0")
        precondition(config.featureCount >= 1 && config.classCount >= 1, "featureCount and classCount must be >= 1")
        precondition(config.testFraction >= 0 && config.testFraction < 1, "testFraction must be in [0, 1)")
        precondition(config.alpha >= 0 && config.beta >= 0, "alpha and beta are standard deviations (>= 0)")
        precondition(config.testMultiple >= 1, "testMultiple must be >= 1")
        if let cap = maxSamplesPerClient { precondition(cap >= 1, "maxSamplesPerClient must be >= 1") }
        let f = config.featureCount, c = config.classCount

        // Feature standard deviations: variance j^-1.2, j = 1..f.
        let featureStd = (1...f).map { pow(Double($0), -0.6) }

        var sharedW: [Double] = []
        var sharedB: [Double] = []
        if config.iid {
            var g = SeededGenerator(seed: deriveSeed(config.seed, 0xFFFF_FFFF_FFFF_FFFF))
            sharedW = (0..<(f * c)).map { _ in g.nextNormal() }
            sharedB = (0..<c).map { _ in g.nextNormal() }
        }

        var clients: [SyntheticClientData] = []
        clients.reserveCapacity(config.clientCount)
        for k in 0..<config.clientCount {
            var g = SeededGenerator(seed: deriveSeed(config.seed, UInt64(k)))
            let drawn = g.nextLogNormal(mean: 4, standardDeviation: 2)
            var n = (drawn < 1e9 ? Int(drawn) : 1_000_000_000) + minimumSamplesPerClient
            if let cap = maxSamplesPerClient { n = min(n, cap) }

            let W: [Double], b: [Double], v: [Double]
            if config.iid {
                W = sharedW
                b = sharedB
                v = [Double](repeating: 0, count: f)
            } else {
                let u = g.nextNormal(mean: 0, standardDeviation: config.alpha)
                let B = g.nextNormal(mean: 0, standardDeviation: config.beta)
                W = (0..<(f * c)).map { _ in g.nextNormal(mean: u, standardDeviation: 1) }
                b = (0..<c).map { _ in g.nextNormal(mean: u, standardDeviation: 1) }
                v = (0..<f).map { _ in g.nextNormal(mean: B, standardDeviation: 1) }
            }

            var xs = [Double](repeating: 0, count: f)
            var z = [Double](repeating: 0, count: c)
            func draw(_ count: Int) -> Dataset {
                var features = [Float](repeating: 0, count: count * f)
                var labels = [Float](repeating: 0, count: count)
                for i in 0..<count {
                    for j in 0..<f {
                        xs[j] = v[j] + featureStd[j] * g.nextNormal()
                        features[i * f + j] = Float(xs[j])
                    }
                    for q in 0..<c { z[q] = b[q] }
                    for j in 0..<f {
                        let xj = xs[j]
                        for q in 0..<c { z[q] += xj * W[j * c + q] }
                    }
                    var arg = 0
                    for q in 1..<c where z[q] > z[arg] { arg = q }
                    labels[i] = Float(arg)
                }
                return Dataset(featureCount: f, features: features, labels: labels)
            }
            let all = draw(n)

            var order = Array(0..<n)
            g.shuffle(&order)
            let testCount = Int((config.testFraction * Double(n) + 1e-9).rounded(.down))
            let train = all.subset(order[0..<(n - testCount)])
            var test = all.subset(order[(n - testCount)...])
            // Drawn after everything above, so the training rows and the held-out rows stay those of multiple 1.
            if config.testMultiple > 1, testCount > 0 {
                test = Dataset.concatenating([test, draw((config.testMultiple - 1) * testCount)], featureCount: f)
            }
            clients.append(SyntheticClientData(clientIndex: k, train: train, test: test))
        }
        return clients
    }
}
