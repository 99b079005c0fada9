/// SGD with heavy-ball momentum on the server: FedAvg's step (η_g = 1, β = 0), FedAvgM's and FedBuff's
/// (McMahan et al. 2017; Nguyen et al. 2022):
///
///     m ← β·m + Δ̄,   x ← x + η_g·m        (β = 0: x ← x + η_g·Δ̄, and m is never read nor written)
public struct ServerSGD: ServerOptimizer, Hashable {
    /// η_g
    public var learningRate: Float
    /// β (server momentum)
    public var momentum: Float

    public init(learningRate: Float = 1.0, momentum: Float = 0) {
        self.learningRate = learningRate
        self.momentum = momentum
    }

    /// The velocity m = 0 (an empty array with β = 0: it is never used).
    public func makeState(parameterCount: Int) -> ServerOptimizerState {
        ServerOptimizerState(first: [Float](repeating: 0, count: momentum == 0 ? 0 : parameterCount))
    }

    public func step(model x: UnsafePointer<Float>, deltaSum s: UnsafePointer<Float>, scale: Float,
                     into out: UnsafeMutablePointer<Float>, count n: Int, state: inout ServerOptimizerState) {
        let beta = momentum, eta = learningRate
        if beta == 0 {
            for i in 0..<n { out[i] = x[i] + eta * (s[i] * scale) }
            return
        }
        if state.first.count != n { state.first = [Float](repeating: 0, count: n) }
        state.first.withUnsafeMutableBufferPointer { mb in
            let m = mb.baseAddress!
            for i in 0..<n {
                let v = beta * m[i] + s[i] * scale
                m[i] = v
                out[i] = x[i] + eta * v
            }
        }
    }
}
