import NIOCore

/// Completes a promise with the peer's identity once the TLS handshake has authenticated it, or fails
/// it if the connection ends first. Lets a session await "who is this" before reading any message.
public final class PeerAuthenticationHandler: ChannelInboundHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer

    private let promise: EventLoopPromise<PeerIdentity>

    public init(promise: EventLoopPromise<PeerIdentity>) {
        self.promise = promise
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let authenticated = event as? TLSPeerAuthenticated {
            promise.succeed(authenticated.identity)
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        promise.fail(error)
        context.fireErrorCaught(error)
    }

    public func channelInactive(context: ChannelHandlerContext) {
        promise.fail(ChannelError.eof)
        context.fireChannelInactive()
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        promise.fail(ChannelError.ioOnClosedChannel)
    }
}

public enum SecureChannel {
    /// Adds the TLS handler and a peer-authentication waiter to `channel`'s pipeline. Call on the
    /// channel's event loop (inside a channel initializer). The future completes after the handshake.
    public static func addTLSHandlers(to channel: any Channel, context: TLSContext, serverHostname: String?) throws -> EventLoopFuture<PeerIdentity> {
        let promise = channel.eventLoop.makePromise(of: PeerIdentity.self)
        let tls = try OpenSSLHandler(context: context, serverHostname: serverHostname)
        try channel.pipeline.syncOperations.addHandler(tls)
        try channel.pipeline.syncOperations.addHandler(PeerAuthenticationHandler(promise: promise))
        return promise.futureResult
    }
}
