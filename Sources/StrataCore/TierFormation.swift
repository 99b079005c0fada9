/// When tiers can form before every agent is profiled. An agent whose first tasks are still out has a latency of at
/// least the time they have been out: a censored observation. Once every unprofiled agent has been out
/// `stragglerFactor` × longer than the slowest profiled agent's latency, waiting for its profile would only
/// confirm that it belongs to the slowest tier, while every profiled agent waits in untiered buffers for it.
/// Tiers then form at once, each straggler with its lower bound as provisional latency (the slowest tier); its
/// real latency re-tiers it later through the usual hysteresis.
///
/// Only once most connected agents are profiled: two instant agents (fast, or lying) among ten must not set the
/// bound for the other eight and form a tier of their own in milliseconds, where they would commit thousands of
/// versions before anyone else is measured. With fewer than half the agents lying (the threat model), the
/// profiled majority includes an honest one.
public enum TierFormation {
    /// The latencies to form tiers with now, or nil to keep waiting. `profiled`: smoothed latencies of connected,
    /// profiled agents; `outstanding`: for every connected agent that is not, how long its oldest outstanding
    /// training task has been out (nil: it has none, so nothing is known about it yet).
    public static func latencies(profiled: [String: Double], unprofiled: [String: Double?], stragglerFactor: Double,
                                 minimumProfiled: Int) -> [String: Double]? {
        guard profiled.count >= max(1, minimumProfiled), let slowest = profiled.values.max(), slowest.isFinite else { return nil }
        if unprofiled.isEmpty { return profiled }
        guard stragglerFactor > 0 else { return nil }  // 0: wait for every profile
        guard 2 * profiled.count > profiled.count + unprofiled.count else { return nil }
        var latencies = profiled
        for (clientID, out) in unprofiled {
            guard let out, out.isFinite, out >= stragglerFactor * max(slowest, 1e-3) else { return nil }
            latencies[clientID] = out
        }
        return latencies
    }
}
