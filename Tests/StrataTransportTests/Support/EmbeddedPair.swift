@testable import StrataTransport
import NIOCore
import NIOEmbedded

/// Two EmbeddedChannels, a TLS client and a TLS server, connected by copying their outbound bytes
/// into each other's inbound side.
final class EmbeddedPair {
    let client = EmbeddedChannel()
    let server = EmbeddedChannel()
    let clientHandler: OpenSSLHandler
    let serverHandler: OpenSSLHandler
    let clientEvents = EventRecorder()
    let serverEvents = EventRecorder()
    let clientReads = ReadCounter()
    let serverReads = ReadCounter()
    /// When true, `interact` calls `read()` on a channel before delivering bytes to it, like a
    /// socket channel with autoRead on.
    var autoRead = true

    convenience init(
        client clientConfiguration: TLSConfiguration,
        server serverConfiguration: TLSConfiguration,
        serverHostname: String? = "localhost",
        visitorClient: (cert: String, key: String)? = nil
    ) throws {
        try self.init(client: clientConfiguration, serverContext: TLSContext(configuration: serverConfiguration, mode: .server),
                      serverHostname: serverHostname, visitorClient: visitorClient)
    }

    /// With a server context shared between pairs (e.g. one whose revocation list is reloaded).
    init(
        client clientConfiguration: TLSConfiguration,
        serverContext: TLSContext,
        serverHostname: String? = "localhost",
        visitorClient: (cert: String, key: String)? = nil
    ) throws {
        let clientContext: TLSContext
        if let visitor = visitorClient {
            var configuration = clientConfiguration
            configuration.certificateChainFile = visitor.cert
            configuration.privateKeyFile = visitor.key
            clientContext = try TLSContext(configuration: configuration, mode: .client, checkOwnIdentity: false)
        } else {
            clientContext = try TLSContext(configuration: clientConfiguration, mode: .client)
        }
        clientHandler = try OpenSSLHandler(context: clientContext, serverHostname: serverHostname)
        serverHandler = try OpenSSLHandler(context: serverContext)
        try client.pipeline.syncOperations.addHandlers([clientReads, clientHandler, clientEvents])
        try server.pipeline.syncOperations.addHandlers([serverReads, serverHandler, serverEvents])
    }

    /// Makes both channels active (the client's handshake starts).
    func activate() throws {
        let address = try SocketAddress(ipAddress: "127.0.0.1", port: 4433)
        try server.connect(to: address).wait()
        try client.connect(to: address).wait()
    }

    /// Copies bytes back and forth until neither side has anything left to send.
    /// Returns the number of buffers moved.
    @discardableResult
    func interact(maxRounds: Int = 100) throws -> Int {
        var moved = 0
        for _ in 0..<maxRounds {
            var progressed = false
            while let bytes = try client.readOutbound(as: ByteBuffer.self) {
                if autoRead { server.read() }
                try server.writeInbound(bytes)
                progressed = true
                moved += 1
            }
            while let bytes = try server.readOutbound(as: ByteBuffer.self) {
                if autoRead { client.read() }
                try client.writeInbound(bytes)
                progressed = true
                moved += 1
            }
            if !progressed { return moved }
        }
        return moved
    }

    /// All plaintext currently in a channel's inbound buffer, concatenated.
    static func drainInbound(_ channel: EmbeddedChannel) throws -> ByteBuffer {
        var all = ByteBuffer()
        while var part = try channel.readInbound(as: ByteBuffer.self) {
            all.writeBuffer(&part)
        }
        return all
    }

    /// Closes both sides without ever blocking (EmbeddedChannel.finish waits for the close future,
    /// which the TLS handler completes only after the close_notify exchange or its timeout).
    func finish() {
        if client.isActive { client.close(promise: nil) }
        if server.isActive { server.close(promise: nil) }
        _ = try? interact()
        client.embeddedEventLoop.advanceTime(by: .seconds(60))
        server.embeddedEventLoop.advanceTime(by: .seconds(60))
        _ = try? client.finish(acceptAlreadyClosed: true)
        _ = try? server.finish(acceptAlreadyClosed: true)
    }
}

/// Tracks whether a future on an EmbeddedEventLoop has completed (callbacks run synchronously there).
final class CompletionFlag: @unchecked Sendable {
    private(set) var isDone = false
    init<T>(_ future: EventLoopFuture<T>) {
        future.whenComplete { _ in self.isDone = true }
    }
}

struct FutureNotCompleted: Error {}

/// The result of an EmbeddedEventLoop future that must already be complete. Never blocks (a plain
/// `wait()` on an incomplete embedded future would hang the test instead of failing it).
@discardableResult
func completed<T: Sendable>(_ future: EventLoopFuture<T>) throws -> T {
    guard CompletionFlag(future).isDone else { throw FutureNotCompleted() }
    return try future.wait()
}
