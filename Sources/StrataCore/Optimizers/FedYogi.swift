/// FedYogi (Reddi et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2): Yogi on the server.
/// Like FedAdam, but v moves towards Δ̄² by a fixed fraction of Δ̄² (additively, not multiplicatively), so a
/// large Δ̄ does not make v, and the adaptive step size, jump:
///
///     m ← β1·m + (1 − β1)·Δ̄
///     v ← v − (1 − β2)·Δ̄²·sign(v − Δ̄²)       (sign(0) = 0)
///     x ← x + η·m / (√v + τ)            m₀ = 0, v₀ = τ²
public struct FedYogi: ServerOptimizer, Hashable {
    public var learningRate: Float
    public var beta1: Float
    public var beta2: Float
    public var tau: Float

    public init(learningRate: Float = 1e-2, beta1: Float = 0.9, beta2: Float = 0.99, tau: Float = 1e-3) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.tau = tau
    }

    public func makeState(parameterCount: Int) -> ServerOptimizerState {
        adaptiveState(parameterCount: parameterCount, tau: tau)
    }

    public func step(model: UnsafePointer<Float>, deltaSum: UnsafePointer<Float>, scale: Float,
                     into out: UnsafeMutablePointer<Float>, count: Int, state: inout ServerOptimizerState) {
        let take = 1 - beta2
        adaptiveStep(model: model, deltaSum: deltaSum, scale: scale, into: out, count: count, state: &state,
                     learningRate: learningRate, beta1: beta1, tau: tau) { v, d2 in
            let gap = v - d2
            let sign: Float = gap > 0 ? 1 : (gap < 0 ? -1 : 0)
            return v - take * d2 * sign
        }
    }
}
