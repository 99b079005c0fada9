import NIOConcurrencyHelpers
import StrataWire

/// The coordinator's handle on one connected agent: a mailbox drained to the socket by the session's
/// writer task, so the coordinator never waits on a slow peer.
public final class AgentSessionHandle: Sendable, Hashable {
    public let clientID: String
    public let sessionID: UInt64
    private let mailbox: AsyncStream<Message>.Continuation
    /// When the session's reader last received a frame (heartbeats included); read by the failure detector.
    let lastHeard: NIOLockedValueBox<ContinuousClock.Instant>

    init(clientID: String, sessionID: UInt64, mailbox: AsyncStream<Message>.Continuation,
         lastHeard: NIOLockedValueBox<ContinuousClock.Instant> = NIOLockedValueBox(.now)) {
        self.clientID = clientID
        self.sessionID = sessionID
        self.mailbox = mailbox
        self.lastHeard = lastHeard
    }

    func send(_ message: Message) {
        mailbox.yield(message)
    }

    /// Sends a final message; the writer closes the connection after it.
    func finish(with message: Message) {
        mailbox.yield(message)
        mailbox.finish()
    }

    public static func == (lhs: AgentSessionHandle, rhs: AgentSessionHandle) -> Bool { lhs === rhs }
    public func hash(into hasher: inout Hasher) { hasher.combine(ObjectIdentifier(self)) }
}
