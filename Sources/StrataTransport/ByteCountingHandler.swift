import NIOCore

/// Counts the bytes a channel reads and writes at its position in the pipeline (first in the pipeline: the
/// bytes on the wire, TLS records included) and passes everything through unchanged.
public final class ByteCountingHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    private let onRead: @Sendable (Int) -> Void
    private let onWrite: @Sendable (Int) -> Void

    public init(onRead: @escaping @Sendable (Int) -> Void, onWrite: @escaping @Sendable (Int) -> Void) {
        self.onRead = onRead
        self.onWrite = onWrite
    }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        onRead(unwrapInboundIn(data).readableBytes)
        context.fireChannelRead(data)
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        onWrite(unwrapOutboundIn(data).readableBytes)
        context.write(data, promise: promise)
    }
}
