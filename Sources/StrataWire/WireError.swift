/// Why a frame or message could not be decoded. Every decoder path ends in one of these, never a crash.
public enum WireError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The first two bytes were not "ST": the peer does not speak the Strata protocol.
    case badMagic(UInt16)
    /// The frame's protocol version is not one this build understands.
    case unsupportedVersion(UInt8)
    /// The frame's message type is not defined in this protocol version.
    case unknownMessageType(UInt8)
    /// The declared payload length exceeds the configured limit; rejected before any allocation.
    case frameTooLarge(length: Int, limit: Int)
    /// The payload ended before the named field was complete.
    case truncated(field: String)
    /// A field held a value outside its domain.
    case invalidValue(field: String, reason: String)
    /// The payload was longer than its message: the sender and receiver disagree on the layout.
    case trailingBytes(count: Int, messageType: UInt8)
    /// The stream ended in the middle of a frame.
    case incompleteFrameAtEOF(bufferedBytes: Int)
    /// A critical option (key bit 15 set) this build does not understand.
    case unsupportedOption(key: UInt16, field: String)
    /// A message sent in parts announced more bytes than this receiver accepts for one message.
    case messageTooLarge(length: UInt64, limit: Int)

    public var description: String {
        switch self {
        case .badMagic(let magic):
            return "bad frame magic 0x\(String(magic, radix: 16)): the peer does not speak the Strata protocol"
        case .unsupportedVersion(let version):
            return "unsupported protocol version \(version) (this build speaks version \(ProtocolVersion.current)): upgrade the older side"
        case .unknownMessageType(let type):
            return "unknown message type \(type) for protocol version \(ProtocolVersion.current)"
        case .frameTooLarge(let length, let limit):
            return "frame payload of \(length) bytes exceeds the limit of \(limit) bytes: raise --max-frame-bytes on both sides or use a smaller model"
        case .truncated(let field):
            return "frame truncated while reading \(field)"
        case .invalidValue(let field, let reason):
            return "invalid \(field): \(reason)"
        case .trailingBytes(let count, let type):
            return "\(count) unexpected bytes after message type \(type)"
        case .incompleteFrameAtEOF(let count):
            return "connection closed in the middle of a frame (\(count) bytes buffered)"
        case .unsupportedOption(let key, let field):
            return "\(field) carries critical option 0x\(String(key, radix: 16)) that this build does not understand: upgrade it"
        case .messageTooLarge(let length, let limit):
            return limit == 0
                ? "a message of \(length) bytes arrived in parts, which this side does not accept (no model larger than a frame was negotiated)"
                : "a message of \(length) bytes in parts exceeds the limit of \(limit) bytes for this federation's model"
        }
    }

    /// The protocol error code to report to the peer for this decoding failure.
    public var errorCode: ErrorCode {
        switch self {
        case .badMagic, .truncated, .invalidValue, .trailingBytes, .incompleteFrameAtEOF: return .malformedFrame
        case .unsupportedVersion: return .unsupportedVersion
        case .unknownMessageType: return .unknownMessageType
        case .frameTooLarge, .messageTooLarge: return .frameTooLarge
        case .unsupportedOption: return .unsupportedOption
        }
    }
}
