/// FedAdagrad (Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2): Adagrad on the
/// server. v sums every Δ̄² (it never decays, so the step only shrinks); β2 is not used:
///
///     m ← β1·m + (1 − β1)·Δ̄
///     v ← v + Δ̄²
///     x ← x + η·m / (√v + τ)            m₀ = 0, v₀ = τ²
public struct FedAdagrad: ServerOptimizer, Hashable {
    public var learningRate: Float
    public var beta1: Float
    public var tau: Float

    public init(learningRate: Float = 1e-1, beta1: Float = 0.9, tau: Float = 1e-3) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.tau = tau
    }

    public func makeState(parameterCount: Int) -> ServerOptimizerState {
        adaptiveState(parameterCount: parameterCount, tau: tau)
    }

    public func step(model: UnsafePointer<Float>, deltaSum: UnsafePointer<Float>, scale: Float,
                     into out: UnsafeMutablePointer<Float>, count: Int, state: inout ServerOptimizerState) {
        adaptiveStep(model: model, deltaSum: deltaSum, scale: scale, into: out, count: count, state: &state,
                     learningRate: learningRate, beta1: beta1, tau: tau) { v, d2 in v + d2 }
    }
}
