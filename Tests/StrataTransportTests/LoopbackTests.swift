import Foundation
import NIOCore
import NIOPosix
import Testing

@testable import StrataTransport

@Suite("OpenSSLHandler over loopback TCP")
struct LoopbackTests {
    @Test("an agent and the coordinator connect and echo 1 MiB intact")
    func echoOneMebibyte() async throws {
        let pki = try PKIFixture.get()
        try await withEventLoopGroup { group in
            let serverReport = group.next().makePromise(of: ConnectionReport.self)
            let server = try await startEchoServer(group: group, configuration: pki.coordinator(), report: serverReport)
            let port = try #require(server.localAddress?.port)

            var payload = ByteBuffer()
            var generator = SystemRandomNumberGenerator()
            for _ in 0..<(1 << 20) / 8 { payload.writeInteger(generator.next() as UInt64) }
            let clientReport = group.next().makePromise(of: ConnectionReport.self)
            let echoed = group.next().makePromise(of: ByteBuffer.self)
            let context = try TLSContext(configuration: pki.agent(), mode: .client)
            // Dial by IP: the coordinator certificate's SAN holds IP:127.0.0.1.
            let client = try await connectClient(
                group: group, port: port, context: context, serverHostname: "127.0.0.1",
                expectedBytes: payload.readableBytes, report: clientReport, receivedAll: echoed)
            // Written immediately: buffered by the handler until the handshake completes.
            client.writeAndFlush(payload, promise: nil)

            let received = try await value(of: echoed.futureResult, within: 30, "the echoed 1 MiB")
            #expect(received.readableBytes == payload.readableBytes)
            #expect(received == payload)

            try await value(of: client.close(), "the client's close (close_notify exchange)")
            let clientSaw = try await value(of: clientReport.futureResult, "client report")
            let serverSaw = try await value(of: serverReport.futureResult, "server report")
            #expect(clientSaw.identity?.role == .coordinator)
            #expect(serverSaw.identity?.role == .agent)
            #expect(serverSaw.identity?.commonName == "agent-01")
            #expect(serverSaw.received.readableBytes == payload.readableBytes)
            #expect(clientSaw.tlsErrors.isEmpty, "\(clientSaw.tlsErrors)")
            #expect(serverSaw.tlsErrors.isEmpty, "\(serverSaw.tlsErrors)")  // clean close_notify, no uncleanShutdown
            try await server.close()
        }
    }

    @Test("the server's cipher-suite order decides; a bad suite list is a configuration error")
    func cipherSuitesFollowTheServersOrder() async throws {
        let pki = try PKIFixture.get()
        for (suites, expected) in [("TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256"),
                                   (nil, "TLS_AES_256_GCM_SHA384")] as [(String?, String)] {
            try await withEventLoopGroup { group in
                var configuration = pki.coordinator()
                configuration.cipherSuites = suites
                let serverReport = group.next().makePromise(of: ConnectionReport.self)
                let server = try await startEchoServer(group: group, configuration: configuration, report: serverReport)
                let port = try #require(server.localAddress?.port)
                // The client's default order puts AES-256-GCM first: only the server's order can pick AES-128.
                let process = try OpenSSLProcess(["s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", pki.caFile, "-servername", "localhost",
                                                  "-cert", pki.agent().certificateChainFile, "-key", pki.agent().privateKeyFile])
                defer { process.stop() }
                _ = try await value(of: serverReport.futureResult, "the server's report")
                _ = await process.waitForExit(seconds: 10)
                #expect(process.output.contains("Cipher is \(expected)"), "\(process.output)")
                try await server.close()
            }
        }
        var bad = pki.coordinator()
        bad.cipherSuites = "TLS_NOT_A_SUITE"
        #expect(throws: TLSError.self) { try TLSContext(configuration: bad, mode: .server) }
    }

    /// Runs `openssl s_client` against our server and returns the server's report and s_client's exit status.
    private func sClient(_ extra: [String], pki: PKIFixture) async throws -> (ConnectionReport, Int32?, String) {
        try await withEventLoopGroup { group in
            let serverReport = group.next().makePromise(of: ConnectionReport.self)
            let server = try await startEchoServer(group: group, configuration: pki.coordinator(), report: serverReport)
            let port = try #require(server.localAddress?.port)
            let process = try OpenSSLProcess(
                ["s_client", "-connect", "127.0.0.1:\(port)", "-CAfile", pki.caFile, "-servername", "localhost"] + extra)
            defer { process.stop() }
            let report = try await value(of: serverReport.futureResult, "the server's report of the s_client connection")
            let status = await process.waitForExit(seconds: 10)
            let output = process.output
            try await server.close()
            return (report, status, output)
        }
    }

    @Test("refused: a TLS 1.3 client without a certificate")
    func clientWithoutCertificate() async throws {
        let pki = try PKIFixture.get()
        let (report, _, output) = try await sClient(["-tls1_3"], pki: pki)
        #expect(report.identity == nil)
        #expect(!report.handshakeCompleted)
        #expect(report.received.readableBytes == 0)
        let error = try #require(report.tlsErrors.first, "server recorded no error; s_client said: \(output)")
        #expect(error.kind == .peerCertificateMissing, "\(error)")
        #expect(error.reasons.contains { $0.contains("peer did not return a certificate") })
    }

    @Test("refused: a TLS 1.2-only client")
    func tls12Client() async throws {
        let pki = try PKIFixture.get()
        let agent = pki.agent()
        let (report, status, output) = try await sClient(
            ["-tls1_2", "-cert", agent.certificateChainFile, "-key", agent.privateKeyFile], pki: pki)
        #expect(report.identity == nil)
        #expect(report.received.readableBytes == 0)
        let error = try #require(report.tlsErrors.first, "server recorded no error; s_client said: \(output)")
        #expect(error.kind == .handshakeFailed)
        #expect(error.reasons.contains { $0.contains("unsupported protocol") }, "\(error.reasons)")
        #expect(status != 0)
    }

    @Test("control: openssl s_client with a valid agent certificate is accepted")
    func sClientWithCertificate() async throws {
        let pki = try PKIFixture.get()
        let agent = pki.agent("agent-02")
        let (report, _, output) = try await sClient(
            ["-tls1_3", "-cert", agent.certificateChainFile, "-key", agent.privateKeyFile], pki: pki)
        #expect(report.identity?.commonName == "agent-02", "s_client said: \(output)")
        #expect(report.handshakeCompleted)
    }

    /// Connects a Strata client with `configuration` and returns both sides' reports.
    private func connect(
        client configuration: TLSConfiguration,
        serverHostname: String = "localhost",
        server serverConfiguration: TLSConfiguration? = nil,
        pki: PKIFixture
    ) async throws -> (client: ConnectionReport, server: ConnectionReport) {
        try await withEventLoopGroup { group in
            let serverReport = group.next().makePromise(of: ConnectionReport.self)
            let server = try await startEchoServer(group: group, configuration: serverConfiguration ?? pki.coordinator(), report: serverReport)
            let port = try #require(server.localAddress?.port)
            let clientReport = group.next().makePromise(of: ConnectionReport.self)
            let context = try TLSContext(configuration: configuration, mode: .client)
            let client = try await connectClient(
                group: group, port: port, context: context, serverHostname: serverHostname, report: clientReport)
            client.writeAndFlush(ByteBuffer(string: "must never be echoed"), promise: nil)
            let clientSaw = try await value(of: clientReport.futureResult, "the client's report")
            let serverSaw = try await value(of: serverReport.futureResult, "the server's report")
            try await server.close()
            return (clientSaw, serverSaw)
        }
    }

    @Test("refused: a client certificate from another CA")
    func otherCA() async throws {
        let pki = try PKIFixture.get()
        let (client, server) = try await connect(client: pki.otherCAAgent(), pki: pki)
        #expect(server.identity == nil && server.received.readableBytes == 0)
        let error = try #require(server.tlsErrors.first)
        #expect(error.kind == .handshakeFailed)
        #expect(error.reasons.contains { $0.contains("certificate verify failed") }, "\(error.reasons)")
        #expect(error.reasons.contains { $0.contains("unable to get local issuer certificate") }, "\(error.reasons)")
        #expect(client.received.readableBytes == 0)
        // TLS 1.3: the client learns of the rejection from the server's alert after its own handshake.
        let clientError = try #require(client.tlsErrors.first)
        #expect(clientError.kind == .certificateRefused, "\(clientError)")
        #expect(clientError.reasons.contains { $0.contains("alert") })
        #expect(clientError.detail?.contains("unknown_ca") == true, "\(clientError)")
        #expect(clientError.description.contains("not issued by the CA the peer trusts"), "\(clientError)")
    }

    @Test("refused: an expired client certificate")
    func expiredCertificate() async throws {
        let pki = try PKIFixture.get()
        let (client, server) = try await connect(client: pki.expiredAgent(), pki: pki)
        #expect(server.identity == nil && server.received.readableBytes == 0)
        let error = try #require(server.tlsErrors.first)
        #expect(error.kind == .handshakeFailed)
        #expect(error.reasons.contains { $0.contains("certificate has expired") }, "\(error.reasons)")
        #expect(client.received.readableBytes == 0)
        #expect(client.tlsErrors.first?.reasons.contains { $0.contains("certificate expired") } == true, "\(client.tlsErrors)")
        #expect(client.tlsErrors.first?.kind == .certificateRefused, "\(client.tlsErrors)")
        #expect(client.tlsErrors.first?.detail?.contains("has expired") == true, "\(client.tlsErrors)")
    }

    @Test("the client rejects a server whose certificate SAN does not match serverHostname")
    func hostnameMismatch() async throws {
        let pki = try PKIFixture.get()
        let (client, server) = try await connect(client: pki.agent(), serverHostname: "coordinator.example.org", pki: pki)
        let error = try #require(client.tlsErrors.first)
        #expect(error.kind == .handshakeFailed)
        #expect(error.reasons.contains { $0.contains("hostname mismatch") }, "\(error.reasons)")
        #expect(client.identity == nil && !client.handshakeCompleted)
        #expect(server.identity == nil && server.received.readableBytes == 0)
        #expect(!server.tlsErrors.isEmpty)
    }

    @Test("the client rejects a server presenting an agent certificate (no serverAuth)")
    func agentCannotImpersonateCoordinator() async throws {
        let pki = try PKIFixture.get()
        // The impostor's certificate is valid and from the right CA, but only for clientAuth.
        let (client, _) = try await connect(client: pki.agent(), serverHostname: "agent-02", server: pki.agent("agent-02"), pki: pki)
        let error = try #require(client.tlsErrors.first)
        #expect(error.kind == .handshakeFailed)
        #expect(error.reasons.contains { $0.contains("unsuitable certificate purpose") }, "\(error.reasons)")
        #expect(client.identity == nil)
    }
}
