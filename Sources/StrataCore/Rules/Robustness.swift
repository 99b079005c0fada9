// What one agent can do to a buffer: bounded. Robust folds are options of how every rule's buffers fold,
// not modes of their own (docs/ALGORITHMS.md, "Robust aggregation"; docs/SECURITY.md, "Byzantine agents").

/// The robustness settings every rule applies to the updates it folds.
public struct Robustness: Sendable, Hashable {
    /// Adaptive norm bound: a delta whose L2 norm is above `clipMultiple` × the agents' robust norm (the
    /// median of their latest delta norms once every agent reported; see `AgentNorms`) is scaled down to that
    /// bound (its direction kept). Nil: off.
    public var clipMultiple: Double? = 1
    /// No clipping until this many agents sent a delta. Until then, and until the known norms must include an
    /// honest agent's, a buffer's deltas wait for its step and are clipped by the bound known then.
    public var minimumAgents: Int = 3
    /// At most one update per agent in a lane's open buffer, one more queued for the next buffer, a third
    /// refused (`over-share`): a fast agent cannot fill buffers with its own updates.
    public var onePerBuffer: Bool = true
    /// How a full buffer's updates are combined.
    public var fold: BufferFold = .mean

    public init() {}

    public func validate() throws {
        if let c = clipMultiple, !(c >= 1 && c.isFinite) {
            throw StrataCoreError.invalidArgument("the clip multiple must be a number >= 1 (or off)")
        }
        guard minimumAgents >= 1 else {
            throw StrataCoreError.invalidArgument("the adaptive bound needs at least one agent's norm")
        }
        try fold.validate()
    }
}

/// How a buffer's deltas become one step.
public enum BufferFold: Sendable, Hashable, CustomStringConvertible {
    /// The weighted mean (weights = samples × staleness factor), folded as the updates arrive: no copy.
    case mean
    /// Coordinate-wise: drop the ⌊β·K⌋ smallest and largest values of each coordinate, mean of the rest
    /// (Yin et al. 2018; unweighted). Keeps a copy of every delta of the open buffer.
    case trimmedMean(Double)
    /// Coordinate-wise median of the buffer's deltas (Yin et al. 2018); for an even K, the mean of the two
    /// middle values.
    case median

    /// "mean", "median", "trimmed-mean" (β = 0.2) or "trimmed-mean:β".
    public init(parsing text: String) throws {
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        switch parts.first {
        case "mean" where parts.count == 1: self = .mean
        case "median" where parts.count == 1: self = .median
        case "trimmed-mean":
            if parts.count == 1 { self = .trimmedMean(0.2); return }
            guard let beta = Double(parts[1]) else {
                throw StrataCoreError.invalidArgument("trimmed-mean:β needs a number β in [0, 0.5), got \"\(parts[1])\"")
            }
            self = .trimmedMean(beta)
            try validate()
        default:
            throw StrataCoreError.invalidArgument("unknown buffer fold \"\(text)\": use mean, median, trimmed-mean or trimmed-mean:β")
        }
    }

    public var description: String {
        switch self {
        case .mean: "mean"
        case .median: "median"
        case .trimmedMean(let beta): "trimmed-mean:\(beta)"
        }
    }

    /// Whether the buffer must keep every delta (the mean folds them as they come).
    var keepsDeltas: Bool { self != .mean }

    func validate() throws {
        if case .trimmedMean(let beta) = self, !(beta >= 0 && beta < 0.5) {
            throw StrataCoreError.invalidArgument("trimmed-mean:β needs β in [0, 0.5), got \(beta)")
        }
    }

    /// How many values to drop at each end of a coordinate's K sorted values.
    func trimmed(of k: Int) -> Int {
        switch self {
        case .mean: 0
        case .median: (k - 1) / 2
        case .trimmedMean(let beta): min(Int((beta * Double(k)).rounded(.down)), (k - 1) / 2)
        }
    }
}

/// Each agent's latest delta norm, and the adaptive bound they give. Order statistics are over agents, not
/// over updates: an agent that sends ten times as many updates still has one vote.
///
/// The bound assumes fewer than half of the N connected agents lie (f ≤ ⌊(N−1)/2⌋). Of the n norms known, the
/// (n − f)-th smallest is then at most some honest agent's norm whatever the liars sent: once every agent
/// has reported that is the (upper) median, and while only the fastest few have — an attacker that answers
/// at once is among them — it is a lower quantile, down to the smallest norm.
public struct AgentNorms: Sendable {
    private var latest: [String: Double] = [:]
    /// `latest`'s values in ascending order, refreshed by `record`.
    private var sorted: [Double] = []
    private var changesSinceSort = 0

    public init() {}

    public var count: Int { latest.count }

    /// The median of the agents' latest norms (as of the last refresh).
    public var median: Double? {
        guard !sorted.isEmpty else { return nil }
        let mid = sorted.count / 2   // already in order: no second sort
        return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    }

    public mutating func record(_ norm: Double, client: String) {
        guard norm.isFinite, norm >= 0 else { return }
        latest[client] = norm
        changesSinceSort += 1
        // Sorting every agent's norm on every update would cost O(n log n) per update with thousands of
        // agents; the order statistics move slowly, so they are refreshed every 32 changes once there are many.
        guard latest.count <= 64 || changesSinceSort >= 32 || sorted.isEmpty else { return }
        sorted = latest.values.sorted()
        changesSinceSort = 0
    }

    /// The norm no more than ⌊(N−1)/2⌋ liars can raise, N = max(`connected`, known): the (n − f)-th smallest.
    public func robustNorm(connected: Int) -> Double? {
        let n = sorted.count
        guard n > 0 else { return nil }
        let liars = (max(connected, n) - 1) / 2
        return sorted[max(0, n - 1 - liars)]
    }

    /// Whether the known norms include at least one honest agent's, as `robustNorm` assumes: more than
    /// ⌊(N−1)/2⌋ of them, and at least `minimum`.
    public func includesAnHonestNorm(connected: Int, minimum: Int) -> Bool {
        count >= minimum && count > (max(connected, count) - 1) / 2
    }

    /// multiple × `robustNorm`, once at least `minimum` agents sent a delta.
    public func bound(multiple: Double?, minimum: Int, connected: Int = 0) -> Double? {
        guard let multiple, count >= minimum, let norm = robustNorm(connected: connected), norm > 0 else { return nil }
        return multiple * norm
    }

    /// The factor that brings a delta of `norm` within `bound` (1 when it already is).
    public static func scale(norm: Double, bound: Double?) -> Float {
        guard let bound, norm > bound, norm > 0 else { return 1 }
        return Float(bound / norm)
    }
}

/// Coordinate-wise robust combination of K deltas, unweighted as in [Yin 2018]: each update counts once,
/// whatever rows it claims (a lie about counts then moves nothing), and staleness does not enter.
public enum RobustCombination {
    /// For each coordinate: sort the K values, drop `fold.trimmed(of: K)` at each end, and take the mean of
    /// the rest. With one delta, that delta.
    public static func combine(_ deltas: [[Float]], fold: BufferFold) -> [Float] {
        guard let n = deltas.first?.count else { return [] }
        precondition(deltas.allSatisfy { $0.count == n }, "deltas must have one length")
        return combine(rows: Array(deltas.joined()), parameterCount: n, count: deltas.count, fold: fold)
    }

    /// The same over `k` rows of `parameterCount` values laid end to end (how a lane keeps its buffer).
    public static func combine(rows: [Float], parameterCount n: Int, count k: Int, fold: BufferFold) -> [Float] {
        guard k > 0, n > 0 else { return [Float](repeating: 0, count: max(0, n)) }
        precondition(rows.count == k * n, "\(k) rows of \(n) values expected, got \(rows.count) values")
        let drop = fold.trimmed(of: k)
        let kept = Float(k - 2 * drop)
        var out = [Float](repeating: 0, count: n)
        var scalars = [Float](repeating: 0, count: k)
        rows.withUnsafeBufferPointer { x in
                scalars.withUnsafeMutableBufferPointer { sv in
                    out.withUnsafeMutableBufferPointer { result in
                        var j = 0
                        // One coordinate at a time through an odd-even transposition network (K rounds of
                        // min/max of neighbours: branch-free, where an insertion sort mispredicts).
                        while j < n {
                            for i in 0..<k { sv[i] = x[i &* n &+ j] }
                            for round in 0..<k {
                                var i = round & 1
                                while i + 1 < k {
                                    let a = sv[i], b = sv[i + 1]
                                    sv[i] = min(a, b)
                                    sv[i + 1] = max(a, b)
                                    i += 2
                                }
                            }
                            var sum: Float = 0
                            for r in drop..<(k - drop) { sum += sv[r] }
                            result[j] = sum / kept
                            j += 1
                        }
                    }
                }
        }
        return out
    }
}
