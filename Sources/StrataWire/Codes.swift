public enum ProtocolVersion {
    /// The only version this build speaks. A frame with another version is refused with `unsupportedVersion`.
    /// Version 2 added the options section at the end of every message (docs/PROTOCOL.md §2).
    public static let current: UInt8 = 2
}

/// Message type byte of a frame header.
public enum MessageType: UInt8, Sendable, Hashable, CaseIterable {
    case hello = 1
    case welcome = 2
    case task = 3
    case update = 4
    case ack = 5
    case heartbeat = 6
    case error = 7
    case goodbye = 8
    /// A piece of a message too large for one frame (§2 "Messages in parts"); never delivered on its own.
    case part = 9
}

/// Error codes carried by `error` frames and by `ack` frames with status `refused`.
/// Values are stable across protocol versions; new codes may be added.
public struct ErrorCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    // Framing and session (1xx would collide with HTTP-like habits; keep them small).
    public static let malformedFrame = ErrorCode(rawValue: 1)
    public static let unsupportedVersion = ErrorCode(rawValue: 2)
    public static let frameTooLarge = ErrorCode(rawValue: 3)
    public static let unknownMessageType = ErrorCode(rawValue: 4)
    public static let unexpectedMessage = ErrorCode(rawValue: 5)
    public static let notAuthorized = ErrorCode(rawValue: 6)
    public static let incompatibleData = ErrorCode(rawValue: 7)
    public static let heartbeatTimeout = ErrorCode(rawValue: 8)
    /// A count or value outside what the receiver accepts (a sample count above the hello's or the
    /// coordinator's bound, a value that does not fit the receiver's integers).
    public static let outOfRange = ErrorCode(rawValue: 9)
    /// A message carried a critical option (key bit 15 set) the receiver does not understand.
    public static let unsupportedOption = ErrorCode(rawValue: 10)

    // Update validation: the update is refused, the session stays open.
    public static let shapeMismatch = ErrorCode(rawValue: 100)
    public static let nonFiniteValue = ErrorCode(rawValue: 101)
    public static let normTooLarge = ErrorCode(rawValue: 102)
    public static let unknownTask = ErrorCode(rawValue: 103)
    public static let tooStale = ErrorCode(rawValue: 104)
    public static let wrongClient = ErrorCode(rawValue: 105)
    public static let invalidUpdate = ErrorCode(rawValue: 106)
    /// The agent already has an update waiting for the next buffer of its tier: one agent may hold at most
    /// one update in a buffer and one queued behind it.
    public static let overShare = ErrorCode(rawValue: 107)
    /// The agent reported that it could not do the task (update option 0x8003); another task follows.
    public static let taskFailed = ErrorCode(rawValue: 108)

    // Coordinator state.
    public static let shuttingDown = ErrorCode(rawValue: 200)
    public static let internalError = ErrorCode(rawValue: 201)
    public static let evicted = ErrorCode(rawValue: 202)
    public static let notReady = ErrorCode(rawValue: 203)
    /// The client already has the most concurrent connections the coordinator allows; retry later.
    public static let tooManyConnections = ErrorCode(rawValue: 204)

    static let names: [UInt16: String] = [
        1: "malformed-frame", 2: "unsupported-version", 3: "frame-too-large", 4: "unknown-message-type",
        5: "unexpected-message", 6: "not-authorized", 7: "incompatible-data", 8: "heartbeat-timeout",
        9: "out-of-range", 10: "unsupported-option",
        100: "shape-mismatch", 101: "non-finite-value", 102: "norm-too-large", 103: "unknown-task",
        104: "too-stale", 105: "wrong-client", 106: "invalid-update", 107: "over-share", 108: "task-failed",
        200: "shutting-down", 201: "internal-error", 202: "evicted", 203: "not-ready", 204: "too-many-connections",
    ]

    public var name: String { Self.names[rawValue] ?? "code-\(rawValue)" }
    public var description: String { "\(name) (\(rawValue))" }
}
