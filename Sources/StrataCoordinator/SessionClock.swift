import Foundation
import StrataWire

/// The timing rules of one agent session, decided without I/O so they are tested alone: the hello must
/// come within `helloTimeout`; afterwards the coordinator sends a heartbeat request every
/// `heartbeatInterval` and closes the session when nothing arrived for `idleTimeout`. The session's runner
/// carries out what `next` decides.
struct SessionClock {
    let helloTimeout: Duration
    let idleTimeout: Duration
    let heartbeatInterval: Duration
    /// Before admission nothing tells the clock that the hello arrived, so it looks again this often.
    static let preAdmissionPoll = Duration.milliseconds(250)

    private(set) var sequence: UInt64 = 0
    private var lastBeat: ContinuousClock.Instant?

    init(helloTimeout: Duration, idleTimeout: Duration, heartbeatInterval: Duration) {
        self.helloTimeout = helloTimeout
        self.idleTimeout = idleTimeout
        self.heartbeatInterval = heartbeatInterval
    }

    enum Action: Equatable {
        case wait(Duration)
        case sendHeartbeat(sequence: UInt64)
        case close(ErrorMessage, reason: String)
    }

    /// What to do at `now`, given when the last frame arrived and whether the session was admitted (at
    /// `admittedAt`). `.sendHeartbeat` is recorded as sent.
    mutating func next(now: ContinuousClock.Instant, started: ContinuousClock.Instant, lastHeard: ContinuousClock.Instant,
                       admittedAt: ContinuousClock.Instant?) -> Action {
        guard let admittedAt else {
            let waited = now - started
            if waited >= helloTimeout {
                return .close(ErrorMessage(code: .heartbeatTimeout, message: "no hello within \(Self.seconds(helloTimeout))"),
                              reason: "no hello within \(Self.seconds(helloTimeout))")
            }
            return .wait(min(helloTimeout - waited, Self.preAdmissionPoll))
        }
        let silent = now - lastHeard
        if silent >= idleTimeout {
            return .close(ErrorMessage(code: .heartbeatTimeout, message:
                "nothing received for \(Self.seconds(silent)) (idle timeout \(Self.seconds(idleTimeout))); answer heartbeats and send your own"),
                          reason: "nothing received for \(Self.seconds(silent))")
        }
        let beatDue = (lastBeat ?? admittedAt) + heartbeatInterval
        if now >= beatDue {
            sequence += 1
            lastBeat = now
            return .sendHeartbeat(sequence: sequence)
        }
        return .wait(min(beatDue - now, idleTimeout - silent))
    }

    static func seconds(_ d: Duration) -> String {
        let s = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
        return s == s.rounded() ? "\(Int64(s)) s" : String(format: "%.3g s", s)
    }
}
