import NIOCore
import NIOTLS
import StrataTransport

/// Sits above the TLS handler in an EmbeddedChannel; records events and errors (swallowing errors so
/// EmbeddedChannel does not rethrow them) and forwards plaintext to the channel's inbound buffer.
final class EventRecorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer

    var events: [String] = []
    var identity: PeerIdentity?
    var errors: [TLSError] = []
    var otherErrors: [Error] = []

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let authenticated = event as? TLSPeerAuthenticated {
            events.append("peerAuthenticated")
            identity = authenticated.identity
        } else if let tls = event as? TLSUserEvent, case .handshakeCompleted(let proto) = tls {
            events.append("handshakeCompleted(\(proto ?? "nil"))")
        } else {
            events.append("event:\(event)")
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelActive(context: ChannelHandlerContext) {
        events.append("active")
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        events.append("inactive")
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        events.append("read")
        context.fireChannelRead(data)
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        events.append("readComplete")
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let tls = error as? TLSError {
            events.append("error:\(tls.kind)")
            errors.append(tls)
        } else {
            events.append("error:\(error)")
            otherErrors.append(error)
        }
    }
}

/// Placed below the TLS handler: counts the read() calls that reach the socket side.
final class ReadCounter: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    var reads = 0
    func read(context: ChannelHandlerContext) {
        reads += 1
        context.read()
    }
}
