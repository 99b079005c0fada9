import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix
import StrataTransport
import StrataWire

/// One HTTP request as the admin and metrics endpoints see it: small bodies only (commands, not uploads).
public struct HTTPRequest: Sendable {
    public var method: HTTPMethod
    /// The path without the query, percent-decoded.
    public var path: String
    public var query: [String: String]
    public var body: ByteBuffer
    /// The authenticated peer (nil on a plain-HTTP endpoint).
    public var peer: PeerIdentity?

    /// Path components after the leading slash, e.g. ["v1", "clients", "agent-01"].
    public var segments: [String] { path.split(separator: "/", omittingEmptySubsequences: true).map(String.init) }

    init(head: HTTPRequestHead, body: ByteBuffer, peer: PeerIdentity?) {
        method = head.method
        let parts = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        path = String(parts.first ?? "").removingPercentEncoding ?? String(parts.first ?? "")
        var query: [String: String] = [:]
        if parts.count > 1 {
            for pair in parts[1].split(separator: "&") {
                let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
                let key = String(kv[0]).removingPercentEncoding ?? String(kv[0])
                let value = kv.count > 1 ? (String(kv[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? String(kv[1])) : ""
                query[key] = value
            }
        }
        self.query = query
        self.body = body
        self.peer = peer
    }

    /// Decodes the JSON body.
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(body.readableBytesView))
        } catch {
            throw AdminError(.badRequest, "the request body is not a valid \(T.self) JSON object: \(error)")
        }
    }
}

public struct HTTPResponse: Sendable {
    public var status: HTTPResponseStatus
    public var contentType: String
    public var body: ByteBuffer

    public init(status: HTTPResponseStatus, contentType: String, body: ByteBuffer) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    public static func text(_ status: HTTPResponseStatus, _ text: String, contentType: String = "text/plain; charset=utf-8") -> HTTPResponse {
        HTTPResponse(status: status, contentType: contentType, body: ByteBuffer(string: text))
    }

    public static func json<T: Encodable>(_ value: T, status: HTTPResponseStatus = .ok) -> HTTPResponse {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        do {
            let data = try encoder.encode(value)
            return HTTPResponse(status: status, contentType: "application/json", body: ByteBuffer(bytes: data))
        } catch {
            return .text(.internalServerError, "cannot encode the response: \(error)")
        }
    }

    public static func error(_ error: AdminError) -> HTTPResponse {
        let status: HTTPResponseStatus
        switch error.kind {
        case .badRequest: status = .badRequest
        case .notFound: status = .notFound
        case .conflict: status = .conflict
        case .notReady: status = .serviceUnavailable
        case .internalError: status = .internalServerError
        case .forbidden: status = .forbidden
        }
        return .json(AdminErrorBody(error: error.kind.rawValue, message: error.message), status: status)
    }
}

/// A small HTTP/1.1 server (keep-alive, one request at a time per connection) over plain TCP or Strata's
/// mutual TLS. The admin API and the metrics endpoint are built on it.
struct HTTPService: Sendable {
    typealias Handler = @Sendable (HTTPRequest) async -> HTTPResponse
    typealias Connection = (channel: NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>, identity: EventLoopFuture<PeerIdentity>?)

    var name: String
    var host: String
    var port: Int
    var tlsContext: TLSContext?
    /// Largest request body accepted (413 above it).
    var maxBodyBytes = 64 * 1024
    /// A connection with no complete request for this long is closed.
    var idleTimeout: Duration = .seconds(30)
    var logger: Logger
    /// Called once per connection after the TLS handshake; a non-nil answer is sent to every request and the
    /// connection is closed (e.g. 403 for a certificate without the admin role).
    var authorize: @Sendable (PeerIdentity?) -> HTTPResponse? = { _ in nil }
    var onHandshakeFailure: @Sendable (any Error) -> Void = { _ in }

    func run(group: any EventLoopGroup, until stopped: @escaping @Sendable () async -> Void,
             onListening: @Sendable (String, Int) -> Void, handler: @escaping Handler) async throws {
        let tlsContext = self.tlsContext
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture { () throws -> Connection in
                    var identity: EventLoopFuture<PeerIdentity>?
                    if let tlsContext {
                        identity = try SecureChannel.addTLSHandlers(to: channel, context: tlsContext, serverHostname: nil)
                    }
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true)
                    let async = try NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>(wrappingChannelSynchronously: channel)
                    return (async, identity)
                }
            }
        let boundPort = server.channel.localAddress?.port ?? port
        logger.info("listening", metadata: ["endpoint": "\(name)", "host": "\(host)", "port": "\(boundPort)"])
        onListening(host, boundPort)
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                await stopped()
                try? await server.channel.close()
            }
            try await server.executeThenClose { inbound in
                for try await connection in inbound {
                    group.addTask { await serve(connection, handler: handler) }
                }
            }
            group.cancelAll()
        }
    }

    private func serve(_ connection: Connection, handler: Handler) async {
        var log = logger
        log[metadataKey: "peer"] = "\(connection.channel.channel.remoteAddress.map { "\($0)" } ?? "unknown")"
        do {
            try await connection.channel.executeThenClose { inbound, outbound in
                var peer: PeerIdentity?
                if let identity = connection.identity {
                    do {
                        peer = try await identity.get()
                    } catch {
                        onHandshakeFailure(error)
                        log.info("TLS handshake failed", metadata: ["endpoint": "\(name)", "error": "\(error)"])
                        return
                    }
                }
                let refusal = authorize(peer)
                var head: HTTPRequestHead?
                var body = ByteBuffer()
                var tooLarge = false
                let idle = idleTimeout
                let lastActivity = NIOLockedValueBox(ContinuousClock.now)
                // Closes a connection that has been idle (no request started or answered) for `idleTimeout`.
                let watchdog = Task {
                    while true {
                        let since = ContinuousClock.now - lastActivity.withLockedValue { $0 }
                        if since >= idle { break }
                        try await Task.sleep(for: idle - since)
                    }
                    try? await connection.channel.channel.close()
                }
                defer { watchdog.cancel() }
                for try await part in inbound {
                    lastActivity.withLockedValue { $0 = .now }
                    switch part {
                    case .head(let h):
                        head = h
                        body.clear()
                        tooLarge = false
                    case .body(var chunk):
                        if body.readableBytes + chunk.readableBytes > maxBodyBytes { tooLarge = true } else { body.writeBuffer(&chunk) }
                    case .end:
                        guard let requestHead = head else { continue }
                        let response: HTTPResponse
                        if let refusal {
                            response = refusal
                        } else if tooLarge {
                            response = .json(AdminErrorBody(error: "bad-request", message: "request body larger than \(maxBodyBytes) bytes"),
                                             status: .payloadTooLarge)
                        } else {
                            response = await handler(HTTPRequest(head: requestHead, body: body, peer: peer))
                        }
                        let keepAlive = requestHead.isKeepAlive && refusal == nil
                        var headers = HTTPHeaders()
                        headers.add(name: "Content-Type", value: response.contentType)
                        headers.add(name: "Content-Length", value: String(response.body.readableBytes))
                        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
                        try await outbound.write(.head(HTTPResponseHead(version: requestHead.version, status: response.status, headers: headers)))
                        try await outbound.write(.body(.byteBuffer(response.body)))
                        try await outbound.write(.end(nil))
                        lastActivity.withLockedValue { $0 = .now }
                        head = nil
                        if !keepAlive { return }
                    }
                }
            }
        } catch {
            log.debug("HTTP connection ended with an error", metadata: ["endpoint": "\(name)", "error": "\(error)"])
        }
    }
}
