import Foundation
import Logging
import StrataCore
import StrataStore

/// Health and drain: the failure detector's transitions (persisted, with their reasons) and the
/// SIGTERM drain (stop dispatching, flush or abandon open buffers, checkpoint, goodbye).
extension Coordinator {
    /// Feeds every session's last-heard time to the failure detector and applies its timeouts.
    func checkHealth() async {
        var transitions: [HealthTransition] = []
        for session in sessions.values {
            let heard = (session.lastHeard.withLockedValue { $0 } - startedAt).seconds
            if let t = health.heard(session.clientID, at: heard) { transitions.append(t) }
        }
        transitions += health.evaluate(at: elapsed)
        await persistHealth(transitions)
    }

    func persistHealth(_ transitions: [HealthTransition]) async {
        guard !transitions.isEmpty else { return }
        for t in transitions {
            let level: Logger.Level = t.to == .healthy ? .info : .warning
            logger.log(level: level, "client \(t.to.rawValue)", metadata: ["client": "\(t.clientID)", "from": "\(t.from?.rawValue ?? "-")", "reason": "\(t.reason)"])
        }
        let records = transitions.map {
            HealthEventRecord(clientID: $0.clientID, fromState: $0.from?.rawValue, toState: $0.to.rawValue, reason: $0.reason, at: wallStart + $0.at)
        }
        do {
            try await store.recordHealth(records)
        } catch {
            logger.error("cannot record health transitions", metadata: ["error": "\(error)"])
        }
        onEvent(.healthChanged(transitions))
    }

    /// The failure detector's current view (for the admin API).
    public func healthReport() -> [String: ClientHealth] { health.clients }

    /// SIGTERM: stop handing out work; with `.flush`, step every open buffer and round and commit it; then
    /// checkpoint the database and send every agent goodbye with a retry-after.
    public func drain(reason: String) async {
        guard stopReason == nil, !draining else { return }
        draining = true
        logger.notice("draining", metadata: ["policy": "\(configuration.drainPolicy.rawValue)", "reason": "\(reason)"])
        if configuration.drainPolicy == .flush {
            enqueueChecked(rule.aggregations(now: Self.now()))
            enqueueChecked(rule.flush(now: Self.now()))
            await waitUntilCommitted()
            guard stopReason == nil else { return }
        }
        do {
            try await store.checkpoint()
        } catch {
            logger.error("checkpoint failed", metadata: ["error": "\(error)"])
        }
        requestStop(.signal, detail: reason)
    }
}
