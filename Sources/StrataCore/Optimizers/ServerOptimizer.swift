// The server optimiser seam: how a lane turns the mean delta Δ̄ of a buffer (or round) into a step of its
// model. One type per optimiser, each in its own file, all conforming to `ServerOptimizer`; a rule's lanes
// hold one optimiser value and one `ServerOptimizerState` per lane. Formulas and sources: docs/ALGORITHMS.md,
// "Server optimisers".

/// One server step rule. Deltas are Δ = x_local − x_base, so every optimiser ADDS its step to the model.
public protocol ServerOptimizer: Sendable {
    /// η_g. The divergence guard lowers the step by scaling it (the state is not touched).
    var learningRate: Float { get set }
    /// The state one lane keeps between steps, zeroed (or set to the optimiser's starting value): at most two
    /// model-sized arrays, so it is bounded by the model's size.
    func makeState(parameterCount: Int) -> ServerOptimizerState
    /// One step over `count` coordinates: with Δ̄_i = deltaSum[i] · scale, writes the new model
    /// out[i] = model[i] + (step of Δ̄_i) and updates `state`. `out` may be `deltaSum` (the accumulator writes
    /// the step over its sum): coordinate i reads deltaSum[i] before it writes out[i], and nothing else of either.
    /// `out` may not alias `model`.
    func step(model: UnsafePointer<Float>, deltaSum: UnsafePointer<Float>, scale: Float,
              into out: UnsafeMutablePointer<Float>, count: Int, state: inout ServerOptimizerState)
}

/// A lane's optimiser state: the first moment (SGD's velocity, the adaptive optimisers' m) and the second
/// moment v of the adaptive optimisers. An array an optimiser does not use is empty.
public struct ServerOptimizerState: Sendable, Hashable {
    public var first: [Float]
    public var second: [Float]
    public init(first: [Float], second: [Float] = []) {
        self.first = first
        self.second = second
    }

    /// Floats held: what the state costs (at most 2 × the model).
    public var footprint: Int { first.count + second.count }
}

/// The optimisers a coordinator can be told to use (`--server-optimizer`).
public enum ServerOptimizerKind: String, CaseIterable, Sendable, Hashable, Codable {
    /// SGD with (heavy-ball) momentum: FedAvg / FedAvgM / FedBuff's server step.
    case sgd
    /// FedAdam (Reddi et al., ICLR 2021).
    case adam
    /// FedYogi (Reddi et al., ICLR 2021).
    case yogi
    /// FedAdagrad (Reddi et al., ICLR 2021).
    case adagrad
}

/// Which server optimiser a rule steps with, and its hyperparameters, as one plain value.
public struct ServerOptimizerSettings: Sendable, Hashable {
    public var kind: ServerOptimizerKind
    /// η_g
    public var learningRate: Float
    /// SGD: the momentum β; adaptive: β1, the first moment's decay.
    public var beta1: Float
    /// Adaptive: β2, the second moment's decay (FedAdam, FedYogi; FedAdagrad does not decay).
    public var beta2: Float
    /// Adaptive: τ, the degree of adaptivity (the ε of Adam): larger is less adaptive.
    public var tau: Float

    public init(kind: ServerOptimizerKind, learningRate: Float, beta1: Float, beta2: Float = 0.99, tau: Float = 1e-3) {
        self.kind = kind
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.tau = tau
    }

    /// SGD with momentum: m ← β·m + Δ̄, x ← x + η_g·m.
    public static func sgd(learningRate: Float = 1, momentum: Float = 0) -> ServerOptimizerSettings {
        ServerOptimizerSettings(kind: .sgd, learningRate: learningRate, beta1: momentum, beta2: 0, tau: 0)
    }

    /// The defaults of an optimiser. SGD: η_g = 1, β = 0 (the published rules as published). The adaptive
    /// ones: β1 = 0.9, β2 = 0.99, τ = 10⁻³ as in Reddi et al.'s experiments; η_g = 10⁻² for FedAdam and
    /// FedYogi and 10⁻¹ for FedAdagrad, in the range of the server rates their grid search selected.
    public static func defaults(for kind: ServerOptimizerKind) -> ServerOptimizerSettings {
        switch kind {
        case .sgd: .sgd()
        case .adam: ServerOptimizerSettings(kind: .adam, learningRate: 1e-2, beta1: 0.9, beta2: 0.99, tau: 1e-3)
        case .yogi: ServerOptimizerSettings(kind: .yogi, learningRate: 1e-2, beta1: 0.9, beta2: 0.99, tau: 1e-3)
        case .adagrad: ServerOptimizerSettings(kind: .adagrad, learningRate: 1e-1, beta1: 0.9, beta2: 0, tau: 1e-3)
        }
    }

    public func makeOptimizer() -> any ServerOptimizer {
        switch kind {
        case .sgd: ServerSGD(learningRate: learningRate, momentum: beta1)
        case .adam: FedAdam(learningRate: learningRate, beta1: beta1, beta2: beta2, tau: tau)
        case .yogi: FedYogi(learningRate: learningRate, beta1: beta1, beta2: beta2, tau: tau)
        case .adagrad: FedAdagrad(learningRate: learningRate, beta1: beta1, tau: tau)
        }
    }

    public func validate() throws {
        func bad(_ s: String) -> StrataCoreError { .invalidArgument(s) }
        guard learningRate > 0, learningRate.isFinite else { throw bad("the server learning rate must be a positive number") }
        guard beta1 >= 0, beta1 < 1 else { throw bad("the server momentum / beta1 must be in [0, 1)") }
        if kind != .sgd {
            guard beta2 >= 0, beta2 < 1 else { throw bad("beta2 must be in [0, 1)") }
            guard tau > 0, tau.isFinite else { throw bad("tau must be a positive number") }
        }
    }
}

/// The shared loop of the adaptive optimisers (Reddi et al., Algorithm 2), with their second-moment
/// update `second(v, Δ̄²)` passed in:
///   m ← β1·m + (1 − β1)·Δ̄,   v ← second(v, Δ̄²),   x ← x + η·m / (√v + τ).
@inline(__always)
func adaptiveStep(model x: UnsafePointer<Float>, deltaSum s: UnsafePointer<Float>, scale: Float,
                  into out: UnsafeMutablePointer<Float>, count n: Int, state: inout ServerOptimizerState,
                  learningRate eta: Float, beta1: Float, tau: Float, second: (Float, Float) -> Float) {
    precondition(state.first.count == n && state.second.count == n, "optimizer state of \(state.first.count)/\(state.second.count) values for \(n) parameters")
    let keep = beta1, take = 1 - beta1
    state.first.withUnsafeMutableBufferPointer { mb in
        state.second.withUnsafeMutableBufferPointer { vb in
            let m = mb.baseAddress!, v = vb.baseAddress!
            for i in 0..<n {
                let d = s[i] * scale
                let mi = keep * m[i] + take * d
                let vi = second(v[i], d * d)
                m[i] = mi
                v[i] = vi
                out[i] = x[i] + eta * mi / (vi.squareRoot() + tau)
            }
        }
    }
}

/// The adaptive optimisers' starting state: m = 0 and v = τ² (Algorithm 2 asks v₋₁ ≥ τ²).
func adaptiveState(parameterCount n: Int, tau: Float) -> ServerOptimizerState {
    ServerOptimizerState(first: [Float](repeating: 0, count: n), second: [Float](repeating: tau * tau, count: n))
}
