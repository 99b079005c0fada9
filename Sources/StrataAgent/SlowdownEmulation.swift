/// Makes this agent answer training tasks later than it could, so that clients of different speeds (latency
/// tiers) can be emulated on one machine. For experiments and tests only.
///
/// A training task's update is sent `addedDelay + (slowdownFactor − 1) · compute + u · jitter` after it
/// would have been, where `compute` is the time the agent really spent on the task and `u` is uniform in
/// [0, 1) from a `SeededGenerator` seeded with `seed`. The update is computed and persisted first, so the
/// delay never loses work. Evaluation tasks are never delayed: they measure the model, and a round waits for
/// every agent's answer.
public struct SlowdownEmulation: Sendable, Hashable {
    /// Fixed extra time per training task (a slow link, a busy device).
    public var addedDelay: Duration = .zero
    /// ≥ 1: the task takes `slowdownFactor` × its real compute time.
    public var slowdownFactor: Double = 1
    /// Upper bound (exclusive) of an extra uniform random delay.
    public var jitter: Duration = .zero
    /// Seed of the jitter's random stream.
    public var seed: UInt64 = 1

    public init() {}

    public init(addedDelay: Duration = .zero, slowdownFactor: Double = 1, jitter: Duration = .zero, seed: UInt64 = 1) {
        self.addedDelay = addedDelay
        self.slowdownFactor = slowdownFactor
        self.jitter = jitter
        self.seed = seed
    }

    /// Whether any training task can be delayed at all.
    public var isActive: Bool {
        addedDelay > .zero || slowdownFactor > 1 || jitter > .zero
    }

    /// The extra wait for a task that took `computeTime`, with `uniform` in [0, 1) drawn for the jitter.
    /// Never negative: negative inputs, a factor below 1 and non-finite values count as zero extra time.
    public func extraDelay(computeTime: Duration, uniform: Double) -> Duration {
        let fixed = max(addedDelay, .zero)
        let extraFactor = slowdownFactor.isFinite ? max(0, slowdownFactor - 1) : 0
        let scaled = max(computeTime, .zero) * extraFactor
        let u = uniform.isFinite ? min(max(uniform, 0), 1) : 0
        let random = max(jitter, .zero) * u
        return fixed + scaled + random
    }

    /// A stable seed derived from a text (FNV-1a, 64 bits; never 0), e.g. the agent's certificate path, so
    /// that agents started with the same flags still draw different jitter. Unlike `Hasher`, it is the same
    /// in every process.
    public static func derivedSeed(from text: String) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in text.utf8 {
            hash ^= UInt64(byte)
            hash &*= 0x0000_0100_0000_01B3
        }
        return hash == 0 ? 1 : hash
    }
}
