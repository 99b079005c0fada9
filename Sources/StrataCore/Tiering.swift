// Latency tiering: clients are grouped by how long they take to answer a training task, so that a
// round can wait on peers of similar speed instead of on the slowest client overall. Pure logic, no I/O.

#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Smoothed response latency of one client (exponentially weighted moving average).
/// Latency = seconds from dispatching a training task to the arrival of its update.
public struct LatencyProfile: Sendable, Hashable, Codable {
    /// nil until the first sample.
    public private(set) var smoothedSeconds: Double?
    public private(set) var lastSeconds: Double?
    public private(set) var sampleCount: Int

    public init() {
        smoothedSeconds = nil
        lastSeconds = nil
        sampleCount = 0
    }

    /// Restores a profile from storage.
    public init(smoothedSeconds: Double?, lastSeconds: Double?, sampleCount: Int) {
        self.smoothedSeconds = smoothedSeconds
        self.lastSeconds = lastSeconds
        self.sampleCount = max(0, sampleCount)
    }

    /// s ← α·x + (1−α)·s; the first sample sets s = x, so a fresh client is not dragged towards 0.
    /// Ignores non-finite or negative samples (returns false): a broken clock must not poison the average.
    /// `alpha` must be in (0, 1] (see `TieringPolicy.validate()`).
    @discardableResult
    public mutating func record(_ seconds: Double, smoothing alpha: Double) -> Bool {
        precondition(alpha > 0 && alpha <= 1, "smoothing \(alpha) must be in (0, 1]")
        guard seconds.isFinite, seconds >= 0 else { return false }
        if let s = smoothedSeconds {
            smoothedSeconds = alpha * seconds + (1 - alpha) * s
        } else {
            smoothedSeconds = seconds
        }
        lastSeconds = seconds
        sampleCount += 1
        return true
    }
}

public struct TieringPolicy: Sendable, Hashable, Codable {
    /// nil = automatic from the gaps in the sorted latencies.
    public var tierCount: Int?
    /// Cap for the automatic choice.
    public var maxTiers: Int
    /// Every tier holds at least this many clients (when there are enough clients).
    public var minTierSize: Int
    /// Latency samples before a client is placed: one sample may include a cold start.
    public var profilingTasks: Int
    /// EWMA α.
    public var smoothing: Double
    /// Automatic: consecutive sorted latencies with l[i+1]/l[i] >= this are tier boundary candidates.
    public var minGapRatio: Double
    /// Consecutive rebalances that must agree before a client moves, so noise does not bounce clients.
    public var hysteresisRounds: Int
    /// Bounds the churn of one rebalance.
    public var maxMovesPerRebalance: Int

    public init(tierCount: Int? = nil, maxTiers: Int = 5, minTierSize: Int = 1, profilingTasks: Int = 2,
                smoothing: Double = 0.3, minGapRatio: Double = 1.5, hysteresisRounds: Int = 3,
                maxMovesPerRebalance: Int = 2) {
        self.tierCount = tierCount
        self.maxTiers = maxTiers
        self.minTierSize = minTierSize
        self.profilingTasks = profilingTasks
        self.smoothing = smoothing
        self.minGapRatio = minGapRatio
        self.hysteresisRounds = hysteresisRounds
        self.maxMovesPerRebalance = maxMovesPerRebalance
    }

    /// Throws `StrataCoreError.invalidArgument` naming the first bad field.
    public func validate() throws {
        func bad(_ why: String) -> StrataCoreError { .invalidArgument("tiering policy: \(why)") }
        if let k = tierCount, k < 1 { throw bad("tierCount \(k) must be >= 1 (or automatic)") }
        guard maxTiers >= 1 else { throw bad("maxTiers \(maxTiers) must be >= 1") }
        guard minTierSize >= 1 else { throw bad("minTierSize \(minTierSize) must be >= 1") }
        guard profilingTasks >= 1 else { throw bad("profilingTasks \(profilingTasks) must be >= 1") }
        guard smoothing > 0, smoothing <= 1 else { throw bad("smoothing \(smoothing) must be in (0, 1]") }
        guard minGapRatio > 1, minGapRatio.isFinite else { throw bad("minGapRatio \(minGapRatio) must be finite and > 1") }
        guard hysteresisRounds >= 1 else { throw bad("hysteresisRounds \(hysteresisRounds) must be >= 1") }
        guard maxMovesPerRebalance >= 1 else { throw bad("maxMovesPerRebalance \(maxMovesPerRebalance) must be >= 1") }
    }
}

public enum TierPlanner {
    /// Latency as used for ordering and distances: clamped to [1e-6, 1e9] s so log() stays finite;
    /// NaN (which callers should not pass) counts as slowest.
    static func clampedLatency(_ l: Double) -> Double {
        l.isNaN ? 1e9 : min(max(l, 1e-6), 1e9)
    }

    /// Log-latency: tiers differ by ratios (0.05 s vs 0.5 s matters, 10 s vs 10.45 s does not).
    static func logLatency(_ l: Double) -> Double { log(clampedLatency(l)) }

    /// Median of log-latencies; nil if empty.
    static func median(_ values: [Double]) -> Double? { values.median }

    /// Splits clients into tiers by latency, fastest first; each tier lists its clients fastest first.
    /// Sorted ascending, ties by client id, so the result is deterministic. Cuts go at the largest gaps in
    /// log-latency, greedily largest-first (equal gaps: the more balanced cut first), skipping a cut that would
    /// leave a tier with fewer than minTierSize clients.
    /// Fixed `tierCount`: exactly min(tierCount, n / minTierSize) tiers (at least 1); only gaps > 0 are cut, and if
    /// the gaps cannot give that many tiers, equal-count (quantile) splitting is used instead.
    /// Automatic (`tierCount` nil): only gaps with ratio >= minGapRatio are candidates, at most maxTiers − 1 cuts.
    /// Empty input → []. Out-of-range policy fields are clamped to their smallest valid value.
    public static func partition(_ latencies: [String: Double], tierCount: Int?, policy: TieringPolicy) -> [[String]] {
        let sorted = sortedByLatency(latencies)
        guard !sorted.isEmpty else { return [] }
        let cuts = cutIndices(sorted.map(\.latency), tierCount: tierCount, policy: policy)
        var tiers: [[String]] = []
        var start = 0
        for end in cuts + [sorted.count - 1] {
            tiers.append(sorted[start...end].map(\.id))
            start = end + 1
        }
        return tiers
    }

    /// The automatic tier count partition() would choose for these latencies (0 for none).
    public static func automaticTierCount(_ latencies: [String: Double], policy: TieringPolicy) -> Int {
        latencies.isEmpty ? 0 : cutIndices(sortedByLatency(latencies).map(\.latency), tierCount: nil, policy: policy).count + 1
    }

    static func sortedByLatency(_ latencies: [String: Double]) -> [(id: String, latency: Double)] {
        latencies.map { (id: $0.key, latency: clampedLatency($0.value)) }
            .sorted { $0.latency != $1.latency ? $0.latency < $1.latency : $0.id < $1.id }
    }

    /// Ascending indices i such that a tier ends after sorted[i].
    static func cutIndices(_ l: [Double], tierCount: Int?, policy: TieringPolicy) -> [Int] {
        let n = l.count
        let minSize = max(1, policy.minTierSize)
        guard n >= 2 else { return [] }
        let wanted: Int   // tiers
        if let k = tierCount {
            wanted = max(1, min(k, n / minSize))
        } else {
            wanted = max(1, min(policy.maxTiers, n / minSize))
        }
        guard wanted > 1 else { return [] }

        let logs = l.map(log)
        var candidates = (0..<(n - 1)).filter { i in
            tierCount == nil ? l[i + 1] / l[i] >= policy.minGapRatio : l[i + 1] > l[i]
        }
        // Largest gap first; equal gaps: the cut nearer the middle, then the faster one.
        candidates.sort { a, b in
            let ga = logs[a + 1] - logs[a], gb = logs[b + 1] - logs[b]
            if ga != gb { return ga > gb }
            let ba = abs(2 * (a + 1) - n), bb = abs(2 * (b + 1) - n)
            return ba != bb ? ba < bb : a < b
        }
        var cuts: [Int] = []   // kept ascending
        for i in candidates where cuts.count < wanted - 1 {
            let pos = cuts.firstIndex(where: { $0 > i }) ?? cuts.count
            let previous = pos > 0 ? cuts[pos - 1] : -1
            let next = pos < cuts.count ? cuts[pos] : n - 1
            if i - previous >= minSize && next - i >= minSize { cuts.insert(i, at: pos) }
        }
        if tierCount != nil && cuts.count < wanted - 1 {
            // Quantiles: tier t holds sorted[t·n/k ..< (t+1)·n/k]; every size >= n/k >= minSize.
            return (1..<wanted).map { t in t * n / wanted - 1 }
        }
        return cuts
    }
}

public enum TierMoveReason: String, Sendable, Hashable, Codable {
    /// Tiers were formed from the profiled latencies.
    case formation
    /// A new client finished profiling and was placed.
    case profiled
    /// Its latency drifted consistently into another tier (hysteresis satisfied).
    case drift
    /// An operator pinned it.
    case pinned
    /// An operator asked for re-tiering now (`stratactl retier`).
    case `operator`
}

public struct TierMove: Sendable, Hashable, Codable {
    public var clientID: String
    /// nil: the client had no tier.
    public var from: Int?
    public var to: Int
    public var reason: TierMoveReason
    public var latencySeconds: Double?

    public init(clientID: String, from: Int?, to: Int, reason: TierMoveReason, latencySeconds: Double? = nil) {
        self.clientID = clientID
        self.from = from
        self.to = to
        self.reason = reason
        self.latencySeconds = latencySeconds
    }
}

/// Who is in which tier, and the rules by which that changes.
/// The policy must pass `validate()`. Drift evidence lives in memory only: after a restore, hysteresis starts over.
public struct TierAssigner: Sendable {
    public let policy: TieringPolicy
    /// 0 until formed. Fixed afterwards, so tier numbers keep their meaning for operators and storage.
    public private(set) var tierCount: Int
    public private(set) var assignment: [String: Int]
    public private(set) var pins: [String: Int]
    /// Per client: the tier rebalance() last wanted it in, and on how many consecutive calls.
    private var evidence: [String: (target: Int, count: Int)] = [:]

    public var isFormed: Bool { tierCount > 0 }

    public init(policy: TieringPolicy, pins: [String: Int] = [:]) {
        self.init(policy: policy, tierCount: 0, assignment: [:], pins: pins)
    }

    /// Restores a persisted state. Out-of-range tiers are clamped rather than trapped on, so a stale or
    /// hand-edited store cannot crash the coordinator.
    public init(policy: TieringPolicy, tierCount: Int, assignment: [String: Int], pins: [String: Int]) {
        do { try policy.validate() } catch { preconditionFailure("TierAssigner: \(error)") }
        self.policy = policy
        self.tierCount = max(0, tierCount)
        let top = max(0, tierCount - 1)
        self.assignment = tierCount > 0 ? assignment.mapValues { min(max($0, 0), top) } : [:]
        self.pins = pins.mapValues { tierCount > 0 ? min(max($0, 0), top) : max($0, 0) }
    }

    public func tier(of clientID: String) -> Int? { assignment[clientID] }

    /// Sorted client ids.
    public func members(of tier: Int) -> [String] {
        assignment.filter { $0.value == tier }.map(\.key).sorted()
    }

    /// First placement: partitions the profiled latencies with policy.tierCount (or automatically), then applies
    /// pins (a pin to a tier >= the formed count is clamped to the slowest tier). One move per client, fastest
    /// first. Throws `invalidArgument` if latencies is empty, holds a non-finite or negative value, or tiers are
    /// already formed.
    public mutating func form(latencies: [String: Double]) throws -> [TierMove] {
        guard !isFormed else { throw StrataCoreError.invalidArgument("tiers are already formed (\(tierCount) tiers)") }
        guard !latencies.isEmpty else { throw StrataCoreError.invalidArgument("cannot form tiers without latencies") }
        if let bad = latencies.first(where: { !($0.value.isFinite && $0.value >= 0) }) {
            throw StrataCoreError.invalidArgument("latency \(bad.value) of client \(bad.key) must be finite and >= 0")
        }
        let tiers = TierPlanner.partition(latencies, tierCount: policy.tierCount, policy: policy)
        tierCount = tiers.count
        pins = pins.mapValues { min($0, tierCount - 1) }
        var moves: [TierMove] = []
        for (t, ids) in tiers.enumerated() {
            for id in ids {
                let pin = pins[id]
                assignment[id] = pin ?? t
                moves.append(TierMove(clientID: id, from: nil, to: pin ?? t, reason: pin == nil ? .formation : .pinned,
                                      latencySeconds: latencies[id]))
            }
        }
        return moves
    }

    /// Places one newly profiled client into the tier whose median member latency is nearest in log-latency
    /// (pins win; tiers without a member in `latencies` are skipped; ties go to the slower tier, so a borderline
    /// newcomer cannot hold back a fast tier). With no reference at all it goes to the slowest tier.
    /// Returns nil if tiers are not formed yet or the client already has a tier.
    public mutating func place(_ clientID: String, latency: Double, latencies: [String: Double]) -> TierMove? {
        guard isFormed, assignment[clientID] == nil else { return nil }
        if let pin = pins[clientID] {
            assignment[clientID] = pin
            return TierMove(clientID: clientID, from: nil, to: pin, reason: .pinned, latencySeconds: latency)
        }
        let x = TierPlanner.logLatency(latency)
        let medians = tierMedians(latencies, excluding: clientID)
        var best = tierCount - 1, bestDistance = Double.infinity
        for t in 0..<tierCount {
            guard let m = medians[t] else { continue }
            let d = abs(x - m)
            if d <= bestDistance { best = t; bestDistance = d }
        }
        assignment[clientID] = best
        return TierMove(clientID: clientID, from: nil, to: best, reason: .profiled, latencySeconds: latency)
    }

    /// Periodic re-tiering with hysteresis. Targets come from partitioning the latencies of all assigned clients
    /// (pinned ones too, they shape the tiers) with tierCount: self.tierCount. A client whose target differs from its
    /// tier gains evidence when the target repeats on consecutive calls; a different target restarts the count at 1,
    /// reaching its current tier clears it. It moves once the count reaches hysteresisRounds: at most
    /// maxMovesPerRebalance per call, largest log-distance from its current tier's median first, never out of a tier
    /// that would drop below minTierSize, never if pinned. A client missing from `latencies` stays put and its
    /// evidence is kept (no news is not counter-evidence). Returns the moves (reason .drift).
    public mutating func rebalance(latencies: [String: Double]) -> [TierMove] {
        guard isFormed else { return [] }
        let known = latencies.filter { assignment[$0.key] != nil }
        let tiers = TierPlanner.partition(known, tierCount: tierCount, policy: policy)
        var ready: [String] = []
        for (target, ids) in tiers.enumerated() {
            for id in ids {
                guard pins[id] == nil, let current = assignment[id], current != target else {
                    evidence[id] = nil
                    continue
                }
                let count = evidence[id].map { $0.target == target ? $0.count + 1 : 1 } ?? 1
                evidence[id] = (target, count)
                if count >= policy.hysteresisRounds { ready.append(id) }
            }
        }
        let medians = tierMedians(known)
        func distance(_ id: String) -> Double {
            abs(TierPlanner.logLatency(known[id]!) - (medians[assignment[id]!] ?? 0))
        }
        ready.sort { distance($0) != distance($1) ? distance($0) > distance($1) : $0 < $1 }

        var sizes = [Int](repeating: 0, count: tierCount)
        for t in assignment.values { sizes[t] += 1 }
        var moves: [TierMove] = []
        for id in ready where moves.count < policy.maxMovesPerRebalance {
            let from = assignment[id]!, to = evidence[id]!.target
            guard sizes[from] - 1 >= policy.minTierSize else { continue }   // keeps its evidence, may move later
            sizes[from] -= 1
            sizes[to] += 1
            assignment[id] = to
            evidence[id] = nil
            moves.append(TierMove(clientID: id, from: from, to: to, reason: .drift, latencySeconds: known[id]))
        }
        return moves
    }

    /// Operator re-tiering: partitions the latencies of every assigned or newly profiled client with the formed
    /// tier count and moves each unpinned client to its target at once — no hysteresis, no move budget (the
    /// partition itself keeps every tier at minTierSize or more). Pinned clients stay; drift evidence is cleared.
    /// Returns the moves (reason .operator); empty if tiers are not formed.
    public mutating func retier(latencies: [String: Double]) -> [TierMove] {
        guard isFormed else { return [] }
        let known = latencies.filter { $0.value.isFinite && $0.value >= 0 }
        let tiers = TierPlanner.partition(known, tierCount: tierCount, policy: policy)
        evidence.removeAll()
        var moves: [TierMove] = []
        for (target, ids) in tiers.enumerated() {
            for id in ids where pins[id] == nil && assignment[id] != target {
                moves.append(TierMove(clientID: id, from: assignment[id], to: target, reason: .operator, latencySeconds: known[id]))
                assignment[id] = target
            }
        }
        return moves.sorted { $0.clientID < $1.clientID }
    }

    /// Pins a client. Once formed the tier is clamped to the slowest tier and an assigned client moves now
    /// (returned); before formation the pin is remembered and applied by form(). A pinned client that has no
    /// tier yet is placed by place(). Throws `invalidArgument` for tier < 0.
    public mutating func pin(_ clientID: String, to tier: Int) throws -> TierMove? {
        guard tier >= 0 else { throw StrataCoreError.invalidArgument("pin tier \(tier) of client \(clientID) must be >= 0") }
        guard isFormed else {
            pins[clientID] = tier
            return nil
        }
        let t = min(tier, tierCount - 1)
        pins[clientID] = t
        evidence[clientID] = nil
        guard let from = assignment[clientID], from != t else { return nil }
        assignment[clientID] = t
        return TierMove(clientID: clientID, from: from, to: t, reason: .pinned)
    }

    /// The client stays in its tier; rebalance() may move it again, with fresh evidence.
    public mutating func unpin(_ clientID: String) {
        pins[clientID] = nil
        evidence[clientID] = nil
    }

    /// Forgets a client entirely (evicted), pin included.
    public mutating func remove(_ clientID: String) {
        assignment[clientID] = nil
        pins[clientID] = nil
        evidence[clientID] = nil
    }

    /// Median log-latency of each tier's members found in `latencies` (nil for a tier without any).
    private func tierMedians(_ latencies: [String: Double], excluding excluded: String? = nil) -> [Int: Double] {
        var logs: [Int: [Double]] = [:]
        for (id, l) in latencies where id != excluded {
            if let t = assignment[id] { logs[t, default: []].append(TierPlanner.logLatency(l)) }
        }
        return logs.compactMapValues(TierPlanner.median)
    }
}
