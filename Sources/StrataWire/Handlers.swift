import NIOCore

/// Splits the plaintext stream into frames and decodes each into a `Message`.
/// The maximum payload size is enforced from the header, before the payload is buffered.
public struct MessageDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Message
    /// Offers the buffer of a large frame (its first bytes written, capacity for all of it) to the layers
    /// below, which may decrypt the rest of the frame straight into it; returns true if one took it. The
    /// transport provides it (`PlaintextReadTarget.offer` over TLS); this module only knows its shape.
    public typealias FrameBufferOffer = (_ buffer: ByteBuffer, _ frameBytes: Int, _ context: ChannelHandlerContext) -> Bool

    public let maxPayloadBytes: Int
    private let offerFrameBuffer: FrameBufferOffer?
    /// Set once an offer was refused: nothing below takes frame buffers (no TLS handler), so stop
    /// allocating and copying one at every read of a large frame.
    private var offersRefused = false

    /// Frames at least this large are offered to `offerFrameBuffer`; smaller ones fit in a few reads anyway.
    static let offerThreshold = 512 * 1024

    /// The connection's account with the global budget for frames being received (nil: no budget).
    private let budget: FrameBudgetGate?
    /// The limit of the first frame's payload, when it is smaller than `maxPayloadBytes` (the coordinator:
    /// the first frame must be a `hello`, so a peer cannot reserve memory for a large frame before it).
    private let maxFirstPayloadBytes: Int?
    private var framesDecoded = 0
    /// Puts messages sent in parts back together; `messageLimit` (nil: 0) bounds each one's size.
    private var assembler = MessageAssembler(maxMessageBytes: 0)
    private let messageLimit: MessageSizeLimit?
    /// Called for every part of a message that is not yet complete: a 400-MB upload on a slow link is progress
    /// for the idle timeouts long before its message is delivered.
    private let onPart: (@Sendable () -> Void)?

    /// - Parameters:
    ///   - budget: frames of at least `budget.threshold` bytes are buffered beyond their start only once
    ///     the budget admitted them; until then reads stop (see `FrameBudgetGate`, which must be in the pipeline).
    ///   - maxFirstPayloadBytes: a smaller limit for the first frame of the connection.
    ///   - messageLimit: the largest message accepted in parts (§2 "Messages in parts"); nil or 0: none. A
    ///     message's first part reserves its whole size (plus one frame) with `budget` before it is buffered.
    ///   - spool: where updates in parts are kept while they arrive (nil: in memory); the coordinator's choice.
    public init(maxPayloadBytes: Int = FrameHeader.defaultMaxPayloadBytes, offerFrameBuffer: FrameBufferOffer? = nil,
                budget: FrameBudgetGate? = nil, maxFirstPayloadBytes: Int? = nil, messageLimit: MessageSizeLimit? = nil,
                spool: UpdateSpool? = nil, onPart: (@Sendable () -> Void)? = nil) {
        assembler.spool = spool
        self.messageLimit = messageLimit
        self.onPart = onPart
        self.maxPayloadBytes = maxPayloadBytes
        self.offerFrameBuffer = offerFrameBuffer
        self.budget = budget
        self.maxFirstPayloadBytes = maxFirstPayloadBytes.map { min($0, maxPayloadBytes) }
    }

    /// The payload limit of the next frame.
    private var currentLimit: Int {
        if framesDecoded == 0, let first = maxFirstPayloadBytes { return first }
        return maxPayloadBytes
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        // The header first (as decodeFrame checks it), then the part's total: the same refusal whatever the reads.
        let firstPartTotal = assembler.isAssembling ? nil
            : try WireCodec.checkedHeader(buffer, maxPayloadBytes: currentLimit).flatMap { _ in MessageAssembler.announcedFirstPart(buffer) }
        if let total = firstPartTotal {
            // A message in parts: refused before anything of it is kept when it is too large, or is the
            // connection's first message (a hello never comes in parts); else its whole size is reserved first.
            guard framesDecoded > 0 || maxFirstPayloadBytes == nil else {
                throw WireError.invalidValue(field: "part", reason: "a connection's first message cannot come in parts")
            }
            let limit = messageLimit?.bytes ?? 0
            guard total <= UInt64(max(0, limit)) else { throw WireError.messageTooLarge(length: total, limit: max(0, limit)) }
            if let budget, try !budget.admit(frameBytes: Int(total) + FrameHeader.size + maxPayloadBytes) { return .needMoreData }
        }
        guard var message = try WireCodec.decodeFrame(from: &buffer, maxPayloadBytes: currentLimit) else {
            if let budget, !assembler.isAssembling, firstPartTotal == nil,
               let frame = Self.announcedFrame(buffer), frame >= budget.threshold {
                // A large frame is buffered beyond its start only with a reservation for all of it; without
                // one its reads are held (the gate) and nothing more is allocated for it here.
                guard try budget.admit(frameBytes: frame) else { return .needMoreData }
            }
            if !offersRefused, let frame = Self.largePartialFrame(buffer), frame >= Self.offerThreshold, let offer = offerFrameBuffer {
                // The frame's own buffer, with what arrived so far; if the layer below takes it, the rest is
                // decrypted into it and it comes back whole as one read, and nothing stays buffered here.
                var frameBuffer = context.channel.allocator.buffer(capacity: frame)
                frameBuffer.writeImmutableBuffer(buffer)
                if offer(frameBuffer, frame, context) {
                    buffer.moveReaderIndex(forwardBy: buffer.readableBytes)
                    return .needMoreData
                }
                offersRefused = true
            }
            Self.reserveForPartialFrame(&buffer)
            return .needMoreData
        }
        framesDecoded &+= 1
        if case .part = message { assembler.maxMessageBytes = messageLimit?.bytes ?? 0 }
        guard let whole = try assembler.take(message, allocator: context.channel.allocator) else {
            onPart?()
            return .continue   // a part: its message's reservation stays until the last one
        }
        message = whole
        budget?.frameCompleted()
        context.fireChannelRead(Self.wrapInboundOut(message))
        return .continue
    }

    /// The byte size (header included) of the frame `buffer` starts, once its header has arrived. Only
    /// called after `decodeFrame` validated that header (magic, version, type, length within the limit).
    static func announcedFrame(_ buffer: ByteBuffer) -> Int? {
        guard buffer.readableBytes >= FrameHeader.size,
              let length = buffer.getInteger(at: buffer.readerIndex + 4, endianness: .little, as: UInt32.self) else { return nil }
        return FrameHeader.size + Int(length)
    }

    /// The byte size of the frame that `buffer` starts, when its header is valid as far as the length goes
    /// and a sixteenth of it has arrived but not all (the sixteenth bounds what a peer can make us allocate
    /// beyond what it actually sent); nil otherwise.
    static func largePartialFrame(_ buffer: ByteBuffer) -> Int? {
        guard buffer.readableBytes >= FrameHeader.size,
              let length = buffer.getInteger(at: buffer.readerIndex + 4, endianness: .little, as: UInt32.self) else { return nil }
        let frame = FrameHeader.size + Int(length)
        guard buffer.readableBytes < frame, buffer.readableBytes >= frame / 16 else { return nil }
        return frame
    }

    /// Once a sixteenth of a large frame has arrived, makes room for all of it, so the frame accumulates in
    /// one buffer instead of being copied at every doubling.
    static func reserveForPartialFrame(_ buffer: inout ByteBuffer) {
        guard let frame = largePartialFrame(buffer) else { return }
        let missing = frame - buffer.readableBytes
        guard missing > buffer.writableBytes else { return }
        buffer.reserveCapacity(minimumWritableBytes: missing)
    }

    public mutating func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        while try decode(context: context, buffer: &buffer) == .continue {}
        if buffer.readableBytes > 0 {
            let count = buffer.readableBytes
            buffer.moveReaderIndex(forwardBy: count)
            throw WireError.incompleteFrameAtEOF(bufferedBytes: count)
        }
        return .needMoreData
    }
}

/// Encodes each outbound `Message` as one frame.
public struct MessageEncoder: MessageToByteEncoder {
    public typealias OutboundIn = Message
    public init() {}
    public func encode(data: Message, out: inout ByteBuffer) throws {
        WireCodec.encode(data, into: &out)
    }
}

/// Encodes each outbound `Message` as one frame without copying large tensor values: the frame goes out as
/// a few buffers (`WireCodec.encodePieces`), the tensors' own buffers among them. A model sent to many
/// sessions is serialized once and its bytes are shared by every session's frame, down to the TLS layer.
///
/// A task or update larger than the peer's frame limit (`peerFrameLimit`, when set and non-zero) goes out as
/// consecutive part frames (§2 "Messages in parts"), written in one go so that no other frame comes between.
public final class MessageFrameEncoder: ChannelOutboundHandler, RemovableChannelHandler {
    public typealias OutboundIn = Message
    public typealias OutboundOut = ByteBuffer

    private let peerFrameLimit: MessageSizeLimit?

    public init(peerFrameLimit: MessageSizeLimit? = nil) {
        self.peerFrameLimit = peerFrameLimit
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        var pieces = WireCodec.encodePieces(unwrapOutboundIn(data), allocator: context.channel.allocator)
        if let limit = peerFrameLimit?.bytes, limit > 0 {
            pieces = WireCodec.splitIntoParts(pieces, maxPayloadBytes: limit, allocator: context.channel.allocator)
        }
        for piece in pieces.dropLast() {
            context.write(wrapOutboundOut(piece), promise: nil)
        }
        context.write(wrapOutboundOut(pieces[pieces.count - 1]), promise: promise)
    }
}
