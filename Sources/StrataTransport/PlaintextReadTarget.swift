import NIOCore

/// An offer from the layer above the TLS handler: decrypt the coming plaintext straight into `buffer`, whose
/// readable bytes already hold the start of a frame, until it holds `length` readable bytes, and deliver it
/// then as one read. A large frame then arrives in the buffer it is decoded from, instead of in pieces of
/// up to 256 KiB that the framing layer would copy together: one copy of every received byte less.
///
/// Sent down the pipeline with `offer(_:length:context:)` (a user outbound event); `taken` says whether a
/// handler below accepted it. A caller whose offer was not taken keeps its bytes and carries on as before.
/// Event-loop confined, like the handlers that exchange it.
public final class PlaintextReadTarget {
    private var buffer: ByteBuffer?
    /// The readable bytes `buffer` must hold before it is delivered.
    public let length: Int

    public init(buffer: ByteBuffer, length: Int) {
        precondition(length > buffer.readableBytes, "a read target must still be missing bytes")
        self.buffer = buffer
        self.length = length
    }

    /// True once a handler below took the buffer.
    public var taken: Bool { buffer == nil }

    /// Takes the buffer out of the offer, so the taker holds the only reference and writes into it in place.
    func take() -> ByteBuffer? {
        defer { buffer = nil }
        return buffer
    }

    /// Offers `buffer` to the handlers below `context`. True if one took it: the caller must then consider
    /// the bytes it put in `buffer` as passed on (they come back, completed, as one `channelRead`).
    public static func offer(_ buffer: ByteBuffer, length: Int, context: ChannelHandlerContext) -> Bool {
        let target = PlaintextReadTarget(buffer: buffer, length: length)
        context.triggerUserOutboundEvent(target, promise: nil)
        return target.taken
    }
}
