import NIOCore

/// Splits the plaintext stream into frames and decodes each into a `Message`.
/// The maximum payload size is enforced from the header, before the payload is buffered.
public struct MessageDecoder: ByteToMessageDecoder {
    public typealias InboundOut = Message
    public let maxPayloadBytes: Int

    public init(maxPayloadBytes: Int = FrameHeader.defaultMaxPayloadBytes) {
        self.maxPayloadBytes = maxPayloadBytes
    }

    public mutating func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let message = try WireCodec.decodeFrame(from: &buffer, maxPayloadBytes: maxPayloadBytes) else {
            Self.reserveForPartialFrame(&buffer)
            return .needMoreData
        }
        context.fireChannelRead(Self.wrapInboundOut(message))
        return .continue
    }

    /// Once a sixteenth of a large frame has arrived, makes room for all of it, so the frame accumulates in
    /// one buffer instead of being copied at every doubling (the sixteenth bounds what a peer can make us
    /// reserve beyond what it actually sent).
    static func reserveForPartialFrame(_ buffer: inout ByteBuffer) {
        guard buffer.readableBytes >= FrameHeader.size,
              let length = buffer.getInteger(at: buffer.readerIndex + 4, endianness: .little, as: UInt32.self) else { return }
        let frame = FrameHeader.size + Int(length)
        let missing = frame - buffer.readableBytes
        guard missing > buffer.writableBytes, buffer.readableBytes >= frame / 16 else { return }
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
public final class MessageFrameEncoder: ChannelOutboundHandler, RemovableChannelHandler {
    public typealias OutboundIn = Message
    public typealias OutboundOut = ByteBuffer

    public init() {}

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let pieces = WireCodec.encodePieces(unwrapOutboundIn(data), allocator: context.channel.allocator)
        for piece in pieces.dropLast() {
            context.write(wrapOutboundOut(piece), promise: nil)
        }
        context.write(wrapOutboundOut(pieces[pieces.count - 1]), promise: promise)
    }
}
