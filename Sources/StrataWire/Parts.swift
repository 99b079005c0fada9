import NIOConcurrencyHelpers
import NIOCore

/// One piece of a task or update too large for one frame (message type 9; docs/PROTOCOL.md §2 "Messages in
/// parts"). The pieces of one message are consecutive frames; together their bytes are that message's payload.
public struct MessagePart: Sendable, Hashable {
    /// The type of the message the parts carry: `task` or `update`.
    public var messageType: MessageType
    /// The carried message's payload length, the same in every part.
    public var totalLength: UInt64
    /// Where this part's bytes start in the carried payload.
    public var offset: UInt64
    public var bytes: ByteBuffer

    public init(messageType: MessageType, totalLength: UInt64, offset: UInt64, bytes: ByteBuffer) {
        self.messageType = messageType
        self.totalLength = totalLength
        self.offset = offset
        self.bytes = bytes
    }

    /// Bytes of the fixed fields before the data: type u8, total u64, offset u64, length u32.
    public static let fieldBytes = 1 + 8 + 8 + 4
    /// Message types that may travel in parts: the two that carry a model.
    public static let carriedTypes: Set<MessageType> = [.task, .update]

    /// The largest carried payload a federation accepts for a model of `parameterCount` float32 values over
    /// `featureCount` features: 0 (no message in parts) when its tasks and updates fit a frame, else the values
    /// plus one frame's worth for everything else (names, shapes, fixed fields, options).
    public static func messageLimit(parameterCount: Int, featureCount: Int, maxFrameBytes: Int) -> Int {
        guard needsParts(parameterCount: parameterCount, featureCount: featureCount, maxFrameBytes: maxFrameBytes) else { return 0 }
        let (values, overflow) = parameterCount.multipliedReportingOverflow(by: 4)
        return overflow ? .max : values.addingReportingOverflow(maxFrameBytes).overflow ? .max : values + maxFrameBytes
    }

    /// Whether a task of a model of `parameterCount` values over `featureCount` features may not fit one frame
    /// of `maxFrameBytes`: its values, the preprocessing a task may carry (24 bytes a feature, 32 counted), and
    /// 1 MiB for everything else. Agents then need `AgentCapabilities.messageParts`.
    public static func needsParts(parameterCount: Int, featureCount: Int, maxFrameBytes: Int) -> Bool {
        let (values, o1) = parameterCount.multipliedReportingOverflow(by: 4)
        let (features, o2) = featureCount.multipliedReportingOverflow(by: 32)
        guard !o1, !o2 else { return true }
        return values + features + (1 << 20) > maxFrameBytes
    }

    func writeFields(into buffer: inout ByteBuffer) {
        buffer.writeInteger(messageType.rawValue)
        buffer.writeInteger(totalLength, endianness: .little)
        buffer.writeInteger(offset, endianness: .little)
        buffer.writeInteger(UInt32(bytes.readableBytes), endianness: .little)
    }
}

extension PayloadReader {
    /// A part's fields, checked on their own: a carried type, at least one byte, within the total.
    mutating func part() throws(WireError) -> MessagePart {
        let typeByte = try u8("part.messageType")
        guard let type = MessageType(rawValue: typeByte), MessagePart.carriedTypes.contains(type) else {
            throw .invalidValue(field: "part.messageType", reason: "type \(typeByte) cannot travel in parts (only task 3 and update 4)")
        }
        let total = try u64("part.totalLength")
        let offset = try u64("part.offset")
        let length = try u32("part.length")
        guard length > 0 else { throw .invalidValue(field: "part.length", reason: "a part carries at least one byte") }
        guard offset < total, UInt64(length) <= total - offset else {
            // Named without adding the two: offset + length may not fit a u64 (found by fuzzing).
            throw .invalidValue(field: "part.offset", reason: "\(length) bytes at offset \(offset) lie outside the message's \(total) bytes")
        }
        guard let bytes = buffer.readView(length: Int(length)) else { throw .truncated(field: "part.data") }
        return MessagePart(messageType: type, totalLength: total, offset: offset, bytes: bytes)
    }
}

/// Puts a message in parts back together. Parts must arrive in order and without any other message between
/// them; the first one's total is checked against `maxMessageBytes` before anything is allocated, and the whole
/// message is then decoded as if it had come in one frame. The bytes gather in memory, or, for an update when
/// `spool` is set, in a file: its values then stay there (`Update.spooledDelta`). Without a spool it does no I/O.
public struct MessageAssembler: Sendable {
    /// The largest carried payload accepted; 0 refuses every part.
    public var maxMessageBytes: Int
    /// Where updates in parts are kept (nil: in memory).
    public var spool: UpdateSpool?
    private var open: Open?

    /// The message being put together and where its bytes so far are.
    private struct Open: Sendable {
        enum Bytes: Sendable {
            case memory(ByteBuffer)
            case file(SpoolFile, written: Int)
        }
        var type: MessageType
        var total: Int
        var bytes: Bytes

        var received: Int {
            switch bytes {
            case .memory(let buffer): buffer.readableBytes
            case .file(_, let written): written
            }
        }

        /// Appends a part's bytes: to the buffer (referenced once while it grows, so nothing is copied), or the file.
        mutating func append(_ part: ByteBuffer) throws(SpoolError) {
            switch bytes {
            case .memory(var buffer):
                bytes = .memory(ByteBuffer())
                buffer.writeImmutableBuffer(part)
                bytes = .memory(buffer)
            case .file(let file, let written):
                try file.write(part, at: written)
                bytes = .file(file, written: written + part.readableBytes)
            }
        }
    }

    public init(maxMessageBytes: Int, spool: UpdateSpool? = nil) {
        self.maxMessageBytes = maxMessageBytes
        self.spool = spool
    }

    /// True between a message's first part and its last.
    public var isAssembling: Bool { open != nil }

    /// Takes the next decoded frame. Returns the message to deliver: `message` itself unless it is a part;
    /// the carried message when this part completes it; nil while parts are still missing. Throws `WireError`
    /// for parts that do not fit together or a message that does not decode, `SpoolError` when the spool fails.
    public mutating func take(_ message: Message, allocator: ByteBufferAllocator = ByteBufferAllocator()) throws -> Message? {
        guard case .part(let part) = message else {
            if let open {
                throw WireError.invalidValue(field: "part", reason: "a \(message.type) message arrived between the parts of a \(open.type) message (\(open.received) of \(open.total) bytes received)")
            }
            return message
        }
        var current: Open
        // Taken out, so that the buffer is referenced once and appending to it below does not copy it.
        if let open = self.open.take() {
            guard part.messageType == open.type, part.totalLength == UInt64(open.total) else {
                throw WireError.invalidValue(field: "part", reason: "a part of a \(part.messageType) message of \(part.totalLength) bytes arrived while a \(open.type) message of \(open.total) bytes was incomplete")
            }
            guard part.offset == UInt64(open.received) else {
                throw WireError.invalidValue(field: "part.offset", reason: "expected offset \(open.received), got \(part.offset): parts must arrive in order")
            }
            current = open
        } else {
            guard part.offset == 0 else {
                throw WireError.invalidValue(field: "part.offset", reason: "a message's first part starts at offset 0, not \(part.offset)")
            }
            guard part.totalLength <= UInt64(max(0, maxMessageBytes)) else {
                throw WireError.messageTooLarge(length: part.totalLength, limit: max(0, maxMessageBytes))
            }
            let total = Int(part.totalLength)
            if part.messageType == .update, let spool {
                current = Open(type: .update, total: total, bytes: .file(try spool.create(), written: 0))
            } else {
                current = Open(type: part.messageType, total: total, bytes: .memory(ByteBuffer.exactCapacity(total, allocator: allocator)))
            }
        }
        try current.append(part.bytes)
        guard current.received == current.total else {
            open = current
            return nil
        }
        switch current.bytes {
        case .memory(var buffer):
            return try WireCodec.decodePayload(type: current.type, from: &buffer)
        case .file(let file, _):
            return try WireCodec.decodeSpooledUpdate(file, length: current.total)
        }
    }

    /// The total length announced by the first part at the front of `buffer`, once its header and fields
    /// have arrived (nil: not a part frame, not a first part, or not enough bytes yet). Lets the receiver
    /// reserve memory for the whole message before any of it is buffered.
    public static func announcedFirstPart(_ buffer: ByteBuffer) -> UInt64? {
        let start = buffer.readerIndex
        // Only the frame's own bytes: a part too short to hold the fields is refused when it is decoded, never
        // read from the next frame's bytes (which would make the refusal depend on how the bytes were read).
        guard buffer.readableBytes >= FrameHeader.size + 17,
              buffer.getInteger(at: start + 3, as: UInt8.self) == MessageType.part.rawValue,
              let length = buffer.getInteger(at: start + 4, endianness: .little, as: UInt32.self), length >= 17,
              let total = buffer.getInteger(at: start + FrameHeader.size + 1, endianness: .little, as: UInt64.self),
              buffer.getInteger(at: start + FrameHeader.size + 9, endianness: .little, as: UInt64.self) == 0
        else { return nil }
        return total
    }
}

extension WireCodec {
    /// Part frames carry at most this many payload bytes even when the peer accepts larger frames: each part
    /// is buffered once more before it is copied into its message, so smaller parts keep that copy small.
    public static let maxPartPayloadBytes = 8 * 1024 * 1024

    /// The frame of `pieces` (as `encodePieces` returns it: one frame, its header first) when its payload is at
    /// most `maxPayloadBytes`; otherwise the same message as consecutive part frames whose payloads are at most
    /// min(`maxPayloadBytes`, `maxPartPayloadBytes`). The message's bytes are sliced, not copied.
    public static func splitIntoParts(_ pieces: [ByteBuffer], maxPayloadBytes: Int,
                                      allocator: ByteBufferAllocator = ByteBufferAllocator()) -> [ByteBuffer] {
        let frameBytes = pieces.reduce(0) { $0 + $1.readableBytes }
        let total = frameBytes - FrameHeader.size
        guard total > maxPayloadBytes, let first = pieces.first, first.readableBytes >= FrameHeader.size,
              let typeByte = first.getInteger(at: first.readerIndex + 3, as: UInt8.self),
              let type = MessageType(rawValue: typeByte), MessagePart.carriedTypes.contains(type)
        else { return pieces }
        let chunk = min(maxPayloadBytes, maxPartPayloadBytes) - MessagePart.fieldBytes - 2
        precondition(chunk > 0, "a frame limit too small to carry parts")
        var payload = pieces
        payload[0].moveReaderIndex(forwardBy: FrameHeader.size)
        var out: [ByteBuffer] = []
        var index = 0
        var offset = 0
        while offset < total {
            let count = min(chunk, total - offset)
            var header = allocator.buffer(capacity: FrameHeader.size + MessagePart.fieldBytes)
            header.writeInteger(FrameHeader.magic, endianness: .little)
            header.writeInteger(ProtocolVersion.current)
            header.writeInteger(MessageType.part.rawValue)
            header.writeInteger(UInt32(MessagePart.fieldBytes + count + 2), endianness: .little)
            header.writeInteger(type.rawValue)
            header.writeInteger(UInt64(total), endianness: .little)
            header.writeInteger(UInt64(offset), endianness: .little)
            header.writeInteger(UInt32(count), endianness: .little)
            out.append(header)
            var missing = count
            while missing > 0 {
                while payload[index].readableBytes == 0 { index += 1 }
                let take = min(missing, payload[index].readableBytes)
                out.append(payload[index].readView(length: take)!)
                missing -= take
            }
            var options = allocator.buffer(capacity: 2)
            options.writeInteger(UInt16(0), endianness: .little)
            out.append(options)
            offset += count
        }
        return out
    }
}

/// A message size limit that may change while a connection runs: the agent learns from the welcome how large
/// its federation's messages are. Read by the connection's handlers, set by the session.
public final class MessageSizeLimit: Sendable {
    private let value: NIOLockedValueBox<Int>

    public init(_ bytes: Int) {
        value = NIOLockedValueBox(bytes)
    }

    public var bytes: Int { value.withLockedValue { $0 } }

    public func set(_ bytes: Int) {
        value.withLockedValue { $0 = bytes }
    }
}
