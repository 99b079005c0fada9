import NIOCore
import NIOEmbedded
import NIOTLS
import Testing

@testable import StrataTransport

@Suite("OpenSSLHandler on EmbeddedChannel")
struct EmbeddedHandshakeTests {
    @Test("handshake completes; both sides see the right identity; events in order")
    func handshakeAndIdentity() throws {
        let pki = try PKIFixture.get()
        let pair = try EmbeddedPair(client: pki.agent("agent-02"), server: pki.coordinator())
        defer { pair.finish() }
        try pair.activate()
        try pair.interact()

        let serverSees = try #require(pair.serverHandler.peerIdentity)
        #expect(serverSees.role == .agent)
        #expect(serverSees.commonName == "agent-02")
        #expect(serverSees.subject.contains("OU=agent"))
        #expect(serverSees.fingerprintSHA256.count == 64)
        #expect(!serverSees.serialNumber.isEmpty)
        #expect(serverSees.notAfter?.hasSuffix("Z") == true)
        #expect(pair.serverEvents.identity == serverSees)

        let clientSees = try #require(pair.clientHandler.peerIdentity)
        #expect(clientSees.role == .coordinator)
        #expect(clientSees.commonName == "coordinator")

        #expect(pair.serverEvents.events == ["active", "peerAuthenticated", "handshakeCompleted(nil)"])
        #expect(pair.clientEvents.events == ["active", "peerAuthenticated", "handshakeCompleted(nil)"])
        #expect(pair.serverEvents.errors.isEmpty && pair.clientEvents.errors.isEmpty)
        #expect(pair.client.isActive && pair.server.isActive)
    }

    @Test("admin certificates authenticate with role admin")
    func adminRole() throws {
        let pki = try PKIFixture.get()
        let pair = try EmbeddedPair(client: pki.admin(), server: pki.coordinator())
        defer { pair.finish() }
        try pair.activate()
        try pair.interact()
        #expect(pair.serverHandler.peerIdentity?.role == .admin)
        #expect(pair.serverHandler.peerIdentity?.commonName == "operator")
    }

    @Test("data flows in both directions")
    func dataBothWays() throws {
        let pki = try PKIFixture.get()
        let pair = try EmbeddedPair(client: pki.agent(), server: pki.coordinator())
        defer { pair.finish() }
        try pair.activate()
        try pair.interact()

        try completed(pair.client.writeAndFlush(ByteBuffer(string: "update from agent")))
        try pair.interact()
        #expect(String(buffer: try EmbeddedPair.drainInbound(pair.server)) == "update from agent")

        // Many small writes between flushes are coalesced, large ones span several records.
        let big = ByteBuffer(repeating: 0xAB, count: 100_000)
        var writes: [EventLoopFuture<Void>] = []
        for index in 0..<50 {
            writes.append(pair.server.write(ByteBuffer(string: "m\(index);")))
        }
        writes.append(pair.server.write(big))
        pair.server.flush()
        try pair.interact()
        for write in writes { try completed(write) }
        var received = try EmbeddedPair.drainInbound(pair.client)
        var expected = ByteBuffer(string: (0..<50).map { "m\($0);" }.joined())
        expected.writeImmutableBuffer(big)
        #expect(received.readableBytes == expected.readableBytes)
        #expect(received.readSlice(length: received.readableBytes) == expected)
    }

    @Test("writes before the handshake completes are delivered after it")
    func writesBeforeHandshake() throws {
        let pki = try PKIFixture.get()
        let pair = try EmbeddedPair(client: pki.agent(), server: pki.coordinator())
        defer { pair.finish() }
        let early = pair.client.writeAndFlush(ByteBuffer(string: "hello early"))
        try pair.activate()
        let duringHandshake = pair.server.writeAndFlush(ByteBuffer(string: "server early"))
        #expect(!CompletionFlag(early).isDone)
        try pair.interact()
        try completed(early)
        try completed(duringHandshake)
        #expect(String(buffer: try EmbeddedPair.drainInbound(pair.server)) == "hello early")
        #expect(String(buffer: try EmbeddedPair.drainInbound(pair.client)) == "server early")
    }

    @Test("close_notify round trip completes the close promise on both sides")
    func closeNotifyRoundTrip() throws {
        let pki = try PKIFixture.get()
        let pair = try EmbeddedPair(client: pki.agent(), server: pki.coordinator())
        defer { pair.finish() }
        try pair.activate()
        try pair.interact()

        let closed = pair.client.close()
        let closedFlag = CompletionFlag(closed)
        #expect(!closedFlag.isDone)  // waits for the server's close_notify
        #expect(pair.client.isActive)
        let late = pair.client.writeAndFlush(ByteBuffer(string: "too late"))
        #expect(throws: ChannelError.self) { try completed(late) }

        try pair.interact()
        #expect(closedFlag.isDone)
        try completed(closed)
        pair.server.embeddedEventLoop.run()  // EmbeddedChannel completes closeFuture in a task
        let serverClosed = CompletionFlag(pair.server.closeFuture)
        #expect(serverClosed.isDone)
        #expect(!pair.client.isActive && !pair.server.isActive)
        #expect(pair.clientEvents.errors.isEmpty, "\(pair.clientEvents.errors)")
        #expect(pair.serverEvents.errors.isEmpty, "\(pair.serverEvents.errors)")
    }

    @Test("close waits at most closeNotifyTimeout for the peer's close_notify")
    func closeNotifyTimeout() throws {
        let pki = try PKIFixture.get()
        var client = pki.agent()
        client.closeNotifyTimeout = .seconds(2)
        let pair = try EmbeddedPair(client: client, server: pki.coordinator())
        defer { pair.finish() }
        try pair.activate()
        try pair.interact()

        let closed = pair.client.close()
        let closedFlag = CompletionFlag(closed)
        pair.client.embeddedEventLoop.advanceTime(by: .milliseconds(1900))
        #expect(!closedFlag.isDone)
        pair.client.embeddedEventLoop.advanceTime(by: .milliseconds(200))
        #expect(!pair.client.isActive)
        #expect(closedFlag.isDone)
        guard closedFlag.isDone else { return }
        let error = #expect(throws: TLSError.self) { try completed(closed) }
        #expect(error?.kind == .closeNotifyTimeout)
    }

    @Test("peer EOF without close_notify is reported as uncleanShutdown")
    func uncleanShutdown() throws {
        let pki = try PKIFixture.get()
        let pair = try EmbeddedPair(client: pki.agent(), server: pki.coordinator())
        defer { pair.finish() }
        try pair.activate()
        try pair.interact()

        // Half-closure: the input side ends, the handler reports it and closes.
        pair.server.pipeline.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        #expect(pair.serverEvents.errors.map(\.kind) == [.uncleanShutdown])
        #expect(!pair.server.isActive)

        // Plain EOF: the channel goes inactive.
        pair.client.pipeline.fireChannelInactive()
        #expect(pair.clientEvents.errors.map(\.kind) == [.uncleanShutdown])
        #expect(pair.clientEvents.events.suffix(2) == ["error:uncleanShutdown", "inactive"])
    }

    @Test("a clean close_notify followed by EOF is not an unclean shutdown")
    func cleanCloseIsNotUnclean() throws {
        let pki = try PKIFixture.get()
        let pair = try EmbeddedPair(client: pki.agent(), server: pki.coordinator())
        defer { pair.finish() }
        try pair.activate()
        try pair.interact()
        pair.server.close(promise: nil)
        try pair.interact()
        #expect(!pair.client.isActive)
        #expect(pair.clientEvents.errors.isEmpty, "\(pair.clientEvents.errors)")
    }

    @Test("handshake timeout fires and closes the channel")
    func handshakeTimeout() throws {
        let pki = try PKIFixture.get()
        var server = pki.coordinator()
        server.handshakeTimeout = .seconds(5)
        let pair = try EmbeddedPair(client: pki.agent(), server: server)
        defer { pair.finish() }
        try pair.activate()  // the client sends a ClientHello that nobody delivers

        pair.server.embeddedEventLoop.advanceTime(by: .seconds(4))
        #expect(pair.server.isActive)
        #expect(pair.serverEvents.errors.isEmpty)
        pair.server.embeddedEventLoop.advanceTime(by: .seconds(2))
        #expect(pair.serverEvents.errors.map(\.kind) == [.handshakeTimeout])
        #expect(!pair.server.isActive)
        #expect(pair.serverEvents.errors.first?.description.contains("timed out") == true)
    }

    @Test("garbage instead of a ClientHello fails the handshake with OpenSSL reasons")
    func garbageClientHello() throws {
        let pki = try PKIFixture.get()
        let pair = try EmbeddedPair(client: pki.agent(), server: pki.coordinator())
        defer { pair.finish() }
        try pair.activate()
        _ = try pair.client.readOutbound(as: ByteBuffer.self)  // drop the real ClientHello
        pair.server.read()
        try pair.server.writeInbound(ByteBuffer(string: "GET / HTTP/1.1\r\nHost: coordinator\r\n\r\n"))

        let error = try #require(pair.serverEvents.errors.first)
        #expect(error.kind == .handshakeFailed)
        #expect(!error.reasons.isEmpty)
        #expect(!pair.server.isActive)
        #expect(pair.serverHandler.peerIdentity == nil)
        #expect(!pair.serverEvents.events.contains("peerAuthenticated"))
    }

    @Test("a trusted certificate without a Strata role fails with peerIdentityInvalid")
    func certificateWithoutRole() throws {
        let pki = try PKIFixture.get()
        let visitor = pki.noRoleCertificate
        // Our own TLSContext refuses to be configured with such a certificate...
        let error = #expect(throws: TLSError.self) {
            _ = try TLSContext(configuration: TLSConfiguration(certificateChainFile: visitor.cert, privateKeyFile: visitor.key, trustRootsFile: pki.caFile), mode: .client)
        }
        #expect(error?.kind == .configuration)
        // ...so build the offending client's SSL_CTX by bypassing that check.
        let pair = try EmbeddedPair(client: pki.agent(), server: pki.coordinator(), visitorClient: visitor)
        defer { pair.finish() }
        try pair.activate()
        try pair.interact()
        let serverError = try #require(pair.serverEvents.errors.first)
        #expect(serverError.kind == .peerIdentityInvalid, "\(serverError)")
        #expect(serverError.reasons.contains { $0.contains("application verification failure") })
        #expect(pair.serverHandler.peerIdentity == nil)
        #expect(!pair.server.isActive)
    }

    @Test("back-pressure: no plaintext is delivered until read() is called")
    func backPressure() throws {
        let pki = try PKIFixture.get()
        let pair = try EmbeddedPair(client: pki.agent(), server: pki.coordinator())
        defer { pair.finish() }
        pair.autoRead = false  // nobody above the handler calls read(); the handshake still completes
        try pair.activate()
        try pair.interact()
        #expect(pair.serverHandler.peerIdentity != nil)

        try completed(pair.client.writeAndFlush(ByteBuffer(string: "first message")))
        let readsBefore = pair.serverReads.reads
        try pair.interact()
        #expect(try pair.server.readInbound(as: ByteBuffer.self) == nil)
        #expect(pair.serverReads.reads == readsBefore)  // the handler did not read on its own

        pair.server.read()
        #expect(String(buffer: try EmbeddedPair.drainInbound(pair.server)) == "first message")
        #expect(pair.serverEvents.events.suffix(2) == ["read", "readComplete"])
        // Served from what was already received, and the read is still passed towards the socket:
        // with auto-read the channel issues one read() per socket read, so swallowing it here would stop
        // a connection whose data arrived early from ever reading again (seen as stalled agents).
        #expect(pair.serverReads.reads == readsBefore + 1)

        // A record arriving in two halves: the first half yields nothing, so the read that was
        // asked for is re-issued towards the socket.
        try completed(pair.client.writeAndFlush(ByteBuffer(string: "second message")))
        var record = try #require(try pair.client.readOutbound(as: ByteBuffer.self))
        let firstHalf = record.readSlice(length: record.readableBytes / 2)!
        pair.server.read()
        let readsAfterRequest = pair.serverReads.reads
        try pair.server.writeInbound(firstHalf)
        #expect(try pair.server.readInbound(as: ByteBuffer.self) == nil)
        #expect(pair.serverReads.reads == readsAfterRequest + 1)
        try pair.server.writeInbound(record)
        #expect(String(buffer: try EmbeddedPair.drainInbound(pair.server)) == "second message")
    }
}
