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
    /// The row counts the agent's hello announced (already bounded): no update or evaluation answer of this
    /// session may claim more.
    let announced: AnnouncedCounts
    /// What the agent's hello said it can do (protocol 2 capabilities) and its feature columns.
    let capabilities: AgentCapabilities
    let featureNames: [String]

    init(clientID: String, sessionID: UInt64, mailbox: AsyncStream<Message>.Continuation,
         lastHeard: NIOLockedValueBox<ContinuousClock.Instant> = NIOLockedValueBox(.now),
         announced: AnnouncedCounts = AnnouncedCounts(train: .max, evaluation: .max),
         capabilities: AgentCapabilities = .all, featureNames: [String] = []) {
        self.capabilities = capabilities
        self.featureNames = featureNames
        self.clientID = clientID
        self.sessionID = sessionID
        self.mailbox = mailbox
        self.lastHeard = lastHeard
        self.announced = announced
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
