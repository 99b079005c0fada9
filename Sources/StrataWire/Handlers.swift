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
            return .needMoreData
        }
        context.fireChannelRead(Self.wrapInboundOut(message))
        return .continue
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
