// The failure detector: each client is healthy, suspect or lost, decided from when the coordinator last
// heard anything from it (heartbeats included) and whether it is connected. Pure: the caller supplies
// the clock (seconds on any monotonic scale).

public enum HealthState: String, Sendable, Hashable, Codable, CaseIterable {
    /// Connected and heard from within `suspectAfter`.
    case healthy
    /// Silent for `suspectAfter`, or disconnected: it may come back.
    case suspect
    /// Silent (connected or not) for `lostAfter`.
    case lost
}

public struct HealthPolicy: Sendable, Hashable, Codable {
    /// Seconds of silence before a connected client is suspect (default: 3 heartbeat intervals).
    public var suspectAfter: Double
    /// Seconds of silence before a client is lost (default: the session idle timeout).
    public var lostAfter: Double

    public init(suspectAfter: Double = 6, lostAfter: Double = 15) {
        self.suspectAfter = suspectAfter
        self.lostAfter = lostAfter
    }

    public func validate() throws {
        guard suspectAfter > 0, suspectAfter.isFinite else { throw StrataCoreError.invalidArgument("health policy: suspectAfter must be positive") }
        guard lostAfter > suspectAfter, lostAfter.isFinite else {
            throw StrataCoreError.invalidArgument("health policy: lostAfter (\(lostAfter)) must exceed suspectAfter (\(suspectAfter))")
        }
    }
}

public struct ClientHealth: Sendable, Hashable, Codable {
    public var state: HealthState
    /// When it entered `state`.
    public var since: Double
    public var reason: String
    public var lastHeard: Double
    public var connected: Bool
}

public struct HealthTransition: Sendable, Hashable, Codable {
    public var clientID: String
    public var from: HealthState?
    public var to: HealthState
    public var reason: String
    public var at: Double
}

public struct FailureDetector: Sendable {
    public let policy: HealthPolicy
    public private(set) var clients: [String: ClientHealth] = [:]

    public init(policy: HealthPolicy) {
        self.policy = policy
    }

    /// A session was admitted.
    public mutating func connected(_ clientID: String, at now: Double) -> HealthTransition? {
        let previous = clients[clientID]
        clients[clientID] = ClientHealth(state: previous?.state ?? .healthy, since: previous?.since ?? now,
                                         reason: previous?.reason ?? "", lastHeard: now, connected: true)
        return move(clientID, to: .healthy, reason: previous == nil ? "joined" : "reconnected", at: now, force: previous == nil)
    }

    /// A frame arrived (any frame: heartbeats prove liveness while a client trains for hours).
    /// Only a frame newer than the last one counts: callers may report the same last-heard time again.
    public mutating func heard(_ clientID: String, at now: Double) -> HealthTransition? {
        guard var health = clients[clientID], now > health.lastHeard else { return nil }
        health.lastHeard = now
        clients[clientID] = health
        guard health.connected, health.state != .healthy else { return nil }
        return move(clientID, to: .healthy, reason: "heard from again", at: now)
    }

    /// The session ended.
    public mutating func disconnected(_ clientID: String, reason: String, at now: Double) -> HealthTransition? {
        guard var health = clients[clientID] else { return nil }
        health.connected = false
        clients[clientID] = health
        guard health.state == .healthy else { return nil }
        return move(clientID, to: .suspect, reason: "disconnected: \(reason)", at: now)
    }

    /// Applies the timeouts. Call periodically.
    public mutating func evaluate(at now: Double) -> [HealthTransition] {
        var transitions: [HealthTransition] = []
        for (clientID, health) in clients.sorted(by: { $0.key < $1.key }) {
            let silence = now - health.lastHeard
            if health.state != .lost, silence >= policy.lostAfter {
                let why = health.connected ? "nothing received for \(Self.format(silence)) s" : "disconnected for \(Self.format(silence)) s"
                if let t = move(clientID, to: .lost, reason: why, at: now) { transitions.append(t) }
            } else if health.state == .healthy, health.connected, silence >= policy.suspectAfter {
                if let t = move(clientID, to: .suspect, reason: "nothing received for \(Self.format(silence)) s", at: now) { transitions.append(t) }
            }
        }
        return transitions
    }

    /// Forgets a client (evicted).
    public mutating func remove(_ clientID: String) {
        clients[clientID] = nil
    }

    /// Restores a persisted state (all restored clients are disconnected until they reconnect).
    public mutating func restore(_ clientID: String, state: HealthState, since: Double, reason: String, lastHeard: Double) {
        clients[clientID] = ClientHealth(state: state, since: since, reason: reason, lastHeard: lastHeard, connected: false)
    }

    private mutating func move(_ clientID: String, to state: HealthState, reason: String, at now: Double, force: Bool = false) -> HealthTransition? {
        guard var health = clients[clientID] else { return nil }
        guard force || health.state != state else { return nil }
        let from: HealthState? = force ? nil : health.state
        health.state = state
        health.since = now
        health.reason = reason
        clients[clientID] = health
        return HealthTransition(clientID: clientID, from: from, to: state, reason: reason, at: now)
    }

    private static func format(_ seconds: Double) -> String {
        String(Int((seconds * 10).rounded()) / 10) + "." + String(Int((seconds * 10).rounded()) % 10)
    }
}
