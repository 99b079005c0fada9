// The divergence guard's decisions, as a pure state machine: it is told of evaluations, of validated and
// refused updates and of non-finite models, with the time, and answers with what to do. The coordinator
// carries the decisions out (steps the models back, lowers the server step, logs, counts). The rule it
// applies is in docs/ALGORITHMS.md, "Divergence guard".

/// When the guard steps back, and by how much it lowers the server step.
public struct DivergencePolicy: Sendable, Hashable {
    /// False: the guard decides nothing (the coordinator behaves as before it existed).
    public var enabled = true
    /// A counted evaluation whose loss is above `lossFactor` × the best counted loss is a rise (nil: the
    /// loss rule is off; a non-finite loss still counts).
    public var lossFactor: Double? = 3
    /// Rises in a row (evaluations of versions made after the last step back) before the guard steps back.
    public var risingEvaluations: Int = 2
    /// The refusal rule: at least this many updates refused as norm-too-large or non-finite within
    /// `refusalWindow` seconds (nil: off) ...
    public var refusals: Int? = 10
    public var refusalWindow: Double = 10
    /// ... from more than this share of the agents whose updates arrived in the window (a minority of
    /// agents sending absurd updates is the robust folds' business, not a divergence).
    public var refusedAgentShare: Double = 0.5
    /// Each step back multiplies the server step by this ...
    public var stepFactor: Double = 0.5
    /// ... but never below this fraction of the configured step.
    public var minimumStepScale: Double = 1.0 / 64

    public init() {}

    public func validate() throws {
        func bad(_ s: String) -> StrataCoreError { .invalidArgument(s) }
        if let f = lossFactor, !(f > 1 && f.isFinite) { throw bad("the divergence loss factor must be a number > 1") }
        guard risingEvaluations >= 1 else { throw bad("the divergence guard needs at least one rising evaluation") }
        if let r = refusals, r < 1 { throw bad("the divergence refusal count must be at least 1") }
        guard refusalWindow > 0, refusalWindow.isFinite else { throw bad("the divergence refusal window must be positive") }
        guard refusedAgentShare >= 0, refusedAgentShare < 1 else { throw bad("the refused agents' share must be in [0, 1)") }
        guard stepFactor > 0, stepFactor <= 1 else { throw bad("the divergence step factor must be in (0, 1]") }
        guard minimumStepScale > 0, minimumStepScale <= 1 else { throw bad("the minimum step scale must be in (0, 1]") }
    }
}

public struct DivergenceGuard: Sendable {
    /// The best counted evaluation: the version the models step back to.
    public struct Best: Sendable, Hashable {
        public var version: Int64
        public var loss: Double
    }

    /// Why the guard steps back, with the numbers.
    public enum Cause: Sendable, Hashable, CustomStringConvertible {
        /// `evaluations` counted evaluations in a row had a loss above `factor` × the best; `loss` the last.
        case lossRose(version: Int64, loss: Double, best: Best, factor: Double, evaluations: Int)
        /// A counted evaluation's loss was not finite.
        case nonFiniteLoss(version: Int64)
        /// A step produced a model that is not finite.
        case nonFiniteModel(version: Int64)
        /// `refusals` divergent refusals within `window` seconds, from `refusedAgents` of the `activeAgents`
        /// whose updates arrived in it.
        case refusalsPiledUp(refusals: Int, window: Double, refusedAgents: Int, activeAgents: Int)

        /// The metric's label.
        public var label: String {
            switch self {
            case .lossRose: "loss-rose"
            case .nonFiniteLoss: "non-finite-loss"
            case .nonFiniteModel: "non-finite-model"
            case .refusalsPiledUp: "refusals"
            }
        }

        public var description: String {
            switch self {
            case .lossRose(let version, let loss, let best, let factor, let n):
                "evaluated loss \(loss) of version \(version) above \(factor) x the best loss \(best.loss) (version \(best.version)) in \(n) evaluation(s) in a row"
            case .nonFiniteLoss(let version):
                "the evaluated loss of version \(version) is not finite"
            case .nonFiniteModel(let version):
                "the model of version \(version) has a value that is not finite"
            case .refusalsPiledUp(let refusals, let window, let refused, let active):
                "\(refusals) updates refused as norm-too-large or non-finite within \(window) s, from \(refused) of the \(active) agents that sent updates"
            }
        }
    }

    /// What the coordinator is to do: step every model back to `target`'s parameters (the initial model
    /// when no evaluation counted yet) and run with `stepScale` × the configured server step.
    public struct Recovery: Sendable, Hashable {
        public var cause: Cause
        public var target: Best?
        public var stepScale: Double
        public var previousStepScale: Double
        /// The how-many-th recovery of this run.
        public var count: Int
    }

    public enum Verdict: Sendable, Hashable {
        case none
        /// The evaluated version is the new best: keep its parameters.
        case newBest
        case recover(Recovery)
    }

    public let policy: DivergencePolicy
    public private(set) var best: Best?
    /// The factor on the configured server step.
    public private(set) var stepScale: Double = 1
    public private(set) var recoveries = 0
    /// Evaluations of versions before this one judge models that were stepped back from.
    public private(set) var firstVersionAfterRollback: Int64 = 0
    /// Updates of tasks handed out before this time were trained on models that were stepped back from.
    public private(set) var rolledBackAt = -Double.infinity
    var rises = 0
    /// The times of the latest `policy.refusals` divergent refusals (a ring).
    var refusalTimes: [Double] = []
    var refusalNext = 0
    /// Per agent: when its latest update arrived, and its latest divergent refusal (bounded by the agents).
    var agents: [String: (update: Double, refusal: Double)] = [:]
    var lastPrune = -Double.infinity

    public init(policy: DivergencePolicy = DivergencePolicy()) {
        self.policy = policy
    }

    /// A counted evaluation (one that met the evaluation quorum) of `version`, with its combined loss
    /// (+infinity or NaN when the agents' losses were not finite).
    public mutating func evaluated(version: Int64, loss: Double, now: Double) -> Verdict {
        guard policy.enabled else { return .none }
        let current = version >= firstVersionAfterRollback
        guard loss.isFinite else {
            return current ? .recover(recover(.nonFiniteLoss(version: version), now: now)) : .none
        }
        if best == nil || loss < best!.loss {
            best = Best(version: version, loss: loss)
            if current { rises = 0 }
            return .newBest
        }
        guard current, let factor = policy.lossFactor, let best else { return .none }
        guard loss > factor * best.loss else {
            rises = 0
            return .none
        }
        rises += 1
        guard rises >= policy.risingEvaluations else { return .none }
        return .recover(recover(.lossRose(version: version, loss: loss, best: best, factor: factor, evaluations: rises), now: now))
    }

    /// A step produced a model with a value that is not finite.
    public mutating func nonFiniteModel(version: Int64, now: Double) -> Recovery? {
        guard policy.enabled else { return nil }
        return recover(.nonFiniteModel(version: version), now: now)
    }

    /// An update arrived from `client` for a task handed out at `dispatchedAt`, and was validated:
    /// `divergent` when it was refused as norm-too-large or non-finite.
    public mutating func updateChecked(client: String, divergent: Bool, dispatchedAt: Double, now: Double) -> Recovery? {
        guard policy.enabled, let threshold = policy.refusals, dispatchedAt >= rolledBackAt else { return nil }
        let window = policy.refusalWindow
        if now - lastPrune >= window {
            lastPrune = now
            agents = agents.filter { $0.value.update > now - window }
        }
        var agent = agents[client] ?? (update: now, refusal: -Double.infinity)
        agent.update = now
        guard divergent else {
            agents[client] = agent
            return nil
        }
        agent.refusal = now
        agents[client] = agent
        if refusalTimes.count < threshold {
            refusalTimes.append(now)
        } else {
            refusalTimes[refusalNext] = now
        }
        refusalNext = (refusalNext + 1) % threshold
        // The oldest of the latest `threshold` refusals: the next one to be overwritten.
        guard refusalTimes.count == threshold, now - refusalTimes[refusalNext] <= window else { return nil }
        let active = agents.values.filter { $0.update > now - window }.count
        let refused = agents.values.filter { $0.refusal > now - window }.count
        guard Double(refused) > policy.refusedAgentShare * Double(active) else { return nil }
        return recover(.refusalsPiledUp(refusals: threshold, window: window, refusedAgents: refused, activeAgents: active), now: now)
    }

    /// The coordinator carried out a recovery: `firstVersion` is the first version it produced (the
    /// restored model). Evaluations of older versions and updates of tasks handed out before `now` no longer
    /// count towards a divergence.
    public mutating func rolledBack(firstVersion: Int64, now: Double) {
        firstVersionAfterRollback = max(firstVersionAfterRollback, firstVersion)
        rolledBackAt = max(rolledBackAt, now)
    }

    private mutating func recover(_ cause: Cause, now: Double) -> Recovery {
        let previous = stepScale
        stepScale = max(policy.minimumStepScale, stepScale * policy.stepFactor)
        rises = 0
        recoveries += 1
        refusalTimes.removeAll()
        refusalNext = 0
        for key in agents.keys { agents[key]?.refusal = -Double.infinity }
        rolledBackAt = max(rolledBackAt, now)
        return Recovery(cause: cause, target: best, stepScale: stepScale, previousStepScale: previous, count: recoveries)
    }
}
