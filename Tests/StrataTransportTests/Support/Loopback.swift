import Foundation
import NIOCore
import NIOPosix
import NIOTLS
import StrataTransport

/// What one connection saw, reported when it closes.
struct ConnectionReport: Sendable {
    var identity: PeerIdentity?
    var handshakeCompleted = false
    var tlsErrors: [TLSError] = []
    var otherErrors: [String] = []
    var received = ByteBuffer()
}

/// Application handler for loopback tests: optionally echoes, collects plaintext, reports at close.
final class Probe: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    private let echo: Bool
    private let expectedBytes: Int?
    private let report: EventLoopPromise<ConnectionReport>
    private let receivedAll: EventLoopPromise<ByteBuffer>?
    private var state = ConnectionReport()

    init(echo: Bool, expectedBytes: Int? = nil, report: EventLoopPromise<ConnectionReport>, receivedAll: EventLoopPromise<ByteBuffer>? = nil) {
        self.echo = echo
        self.expectedBytes = expectedBytes
        self.report = report
        self.receivedAll = receivedAll
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let authenticated = event as? TLSPeerAuthenticated {
            state.identity = authenticated.identity
        } else if let tls = event as? TLSUserEvent, case .handshakeCompleted = tls {
            state.handshakeCompleted = true
        }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer = unwrapInboundIn(data)
        if echo {
            context.write(wrapOutboundOut(buffer), promise: nil)
        }
        state.received.writeBuffer(&buffer)
        if let expectedBytes, state.received.readableBytes >= expectedBytes {
            receivedAll?.succeed(state.received)
        }
    }

    func channelReadComplete(context: ChannelHandlerContext) {
        if echo { context.flush() }
        context.fireChannelReadComplete()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let tls = error as? TLSError {
            state.tlsErrors.append(tls)
        } else {
            state.otherErrors.append("\(error)")
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        report.succeed(state)
        receivedAll?.fail(ChannelError.eof)
        context.fireChannelInactive()
    }
}

struct DeadlineExceeded: Error, CustomStringConvertible {
    var what: String
    var description: String { "deadline exceeded waiting for \(what)" }
}

/// Waits for `future`, failing after `seconds` instead of hanging.
func value<T: Sendable>(of future: EventLoopFuture<T>, within seconds: Int64 = 20, _ what: String) async throws -> T {
    let promise = future.eventLoop.makePromise(of: T.self)
    future.cascade(to: promise)
    let timer = future.eventLoop.scheduleTask(in: .seconds(seconds)) {
        promise.fail(DeadlineExceeded(what: what))
    }
    defer { timer.cancel() }
    return try await promise.futureResult.get()
}

/// Runs `body` with a fresh event loop group that is always shut down afterwards.
func withEventLoopGroup<T>(_ body: (MultiThreadedEventLoopGroup) async throws -> T) async throws -> T {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 2)
    do {
        let result = try await body(group)
        try await group.shutdownGracefully()
        return result
    } catch {
        try? await group.shutdownGracefully()
        throw error
    }
}

/// A TLS echo server on 127.0.0.1 (ephemeral port). `report` receives the first connection's report.
func startEchoServer(
    group: EventLoopGroup,
    configuration: TLSConfiguration,
    report: EventLoopPromise<ConnectionReport>
) async throws -> Channel {
    let context = try TLSContext(configuration: configuration, mode: .server)
    return try await ServerBootstrap(group: group)
        .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
        .childChannelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(OpenSSLHandler(context: context))
                try channel.pipeline.syncOperations.addHandler(Probe(echo: true, report: report))
            }
        }
        .bind(host: "127.0.0.1", port: 0)
        .get()
}

func connectClient(
    group: EventLoopGroup,
    port: Int,
    context: TLSContext,
    serverHostname: String?,
    expectedBytes: Int? = nil,
    report: EventLoopPromise<ConnectionReport>,
    receivedAll: EventLoopPromise<ByteBuffer>? = nil
) async throws -> Channel {
    try await ClientBootstrap(group: group)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(OpenSSLHandler(context: context, serverHostname: serverHostname))
                try channel.pipeline.syncOperations.addHandler(
                    Probe(echo: false, expectedBytes: expectedBytes, report: report, receivedAll: receivedAll))
            }
        }
        .connect(host: "127.0.0.1", port: port)
        .get()
}

/// An `openssl` child process whose output goes to a file; always terminated by `stop()`.
final class OpenSSLProcess: @unchecked Sendable {
    let process = Process()
    let logURL: URL

    init(_ arguments: [String]) throws {
        logURL = FileManager.default.temporaryDirectory.appendingPathComponent("strata-openssl-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        let handle = try FileHandle(forWritingTo: logURL)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl"] + arguments
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        try? handle.close()
    }

    /// Waits up to `seconds` for the process to exit by itself; returns its exit status or nil.
    func waitForExit(seconds: Double) async -> Int32? {
        let deadline = Date().addingTimeInterval(seconds)
        while process.isRunning && Date() < deadline {
            try? await Task.sleep(nanoseconds: 20_000_000)
        }
        return process.isRunning ? nil : process.terminationStatus
    }

    var output: String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: logURL)
    }
}
