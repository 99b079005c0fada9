import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import StrataTransport
import StrataWire

/// Why a `stratactl` command failed; each kind has its own exit status (docs/OPERATIONS.md).
public struct AdminClientError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// Something unexpected: a 5xx answer, a malformed answer.
        case failed
        /// 404: no such client, version or route.
        case notFound
        /// 409 or 400: the action does not apply now, or the request was malformed.
        case rejected
        /// TLS refused (no or untrusted certificate) or 403 (not an admin certificate).
        case notAuthorized
        /// Cannot connect, or the coordinator is not ready (503).
        case unavailable
        /// Bad local configuration: missing certificate files, unreadable config file.
        case configuration
    }
    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }

    /// 1 failed, 2 not found, 3 rejected, 4 not authorized, 5 unavailable, 6 configuration (64: bad flags).
    public var exitCode: Int32 {
        switch kind {
        case .failed: 1
        case .notFound: 2
        case .rejected: 3
        case .notAuthorized: 4
        case .unavailable: 5
        case .configuration: 6
        }
    }
}

/// One admin-API call per connection over mutual TLS (the CLI's usage: a handful of requests, each short).
public final class AdminClient: Sendable {
    public let settings: ConnectionSettings
    private let tlsContext: TLSContext
    private let group: MultiThreadedEventLoopGroup

    public init(settings: ConnectionSettings) throws {
        self.settings = settings
        for (flag, path) in [("--cert", settings.cert), ("--key", settings.key), ("--ca", settings.ca)] {
            guard let path, !path.isEmpty else {
                throw AdminClientError(.configuration, "no \(flag) given: pass \(flag), set \(ConnectionSettings.environmentName(flag)), or name it in the config file")
            }
            guard FileManager.default.isReadableFile(atPath: path) else {
                throw AdminClientError(.configuration, "\(flag) \(path) is not a readable file")
            }
        }
        do {
            tlsContext = try TLSContext(configuration: TLSConfiguration(certificateChainFile: settings.cert!, privateKeyFile: settings.key!,
                                                                        trustRootsFile: settings.ca!), mode: .client)
        } catch {
            throw AdminClientError(.configuration, "\(error)")
        }
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    }

    /// Stops the client's event loop; call before the process exits. (An event loop still closing a TLS
    /// connection while exit() runs OpenSSL's atexit cleanup crashed stratactl with a double free.)
    public func shutdown() async {
        try? await group.shutdownGracefully()
    }

    public func get<T: Decodable>(_ path: String, as type: T.Type) async throws -> T {
        try decode(T.self, from: try await call(.GET, path, body: nil))
    }

    public func post<T: Decodable>(_ path: String, as type: T.Type) async throws -> T {
        try decode(T.self, from: try await call(.POST, path, body: nil))
    }

    public func post<T: Decodable, Body: Encodable>(_ path: String, body: Body, as type: T.Type) async throws -> T {
        let data: Data
        do { data = try JSONEncoder().encode(body) } catch { throw AdminClientError(.failed, "cannot encode the request: \(error)") }
        return try decode(T.self, from: try await call(.POST, path, body: data))
    }

    private func decode<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch {
            throw AdminClientError(.failed, "the coordinator's answer is not a valid \(T.self): \(error)")
        }
    }

    typealias Channel = NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>

    /// Sends one request; returns the body of a 2xx answer, throws a typed error for anything else.
    public func call(_ method: HTTPMethod, _ path: String, body: Data?) async throws -> Data {
        let tlsContext = self.tlsContext
        let serverName = settings.serverName
        let connection: (Channel, EventLoopFuture<PeerIdentity>)
        do {
            connection = try await ClientBootstrap(group: group)
                .connectTimeout(.seconds(5))
                .connect(host: settings.host, port: settings.port) { channel in
                    channel.eventLoop.makeCompletedFuture { () throws -> (Channel, EventLoopFuture<PeerIdentity>) in
                        let identity = try SecureChannel.addTLSHandlers(to: channel, context: tlsContext, serverHostname: serverName)
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return (try Channel(wrappingChannelSynchronously: channel), identity)
                    }
                }
        } catch {
            throw AdminClientError(.unavailable, "cannot connect to the admin API at \(settings.host):\(settings.port): \(error). "
                + "Is the coordinator running, and is this its admin port (--admin-port; default agent port + 1)?")
        }
        let (channel, identity) = connection
        do {
            let peer = try await identity.get()
            guard peer.role == .coordinator else {
                try? await channel.channel.close()
                throw AdminClientError(.notAuthorized, "the server at \(settings.host):\(settings.port) presented a \(peer.role.rawValue) certificate, not a coordinator's")
            }
        } catch let error as AdminClientError {
            throw error
        } catch {
            try? await channel.channel.close()
            throw AdminClientError(.notAuthorized, "TLS with the admin API failed: \(error)")
        }
        do {
            return try await channel.executeThenClose { inbound, outbound in
                var headers = HTTPHeaders()
                headers.add(name: "Host", value: serverName)
                headers.add(name: "Connection", value: "close")
                headers.add(name: "Accept", value: "application/json")
                if let body {
                    headers.add(name: "Content-Type", value: "application/json")
                    headers.add(name: "Content-Length", value: String(body.count))
                } else if method == .POST {
                    headers.add(name: "Content-Length", value: "0")
                }
                // One write: the server may answer (and close) as soon as it has parsed the head of a bodiless
                // request, so a separate `end` write could find the channel closed.
                var parts: [HTTPClientRequestPart] = [.head(HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers))]
                if let body { parts.append(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
                parts.append(.end(nil))
                do {
                    try await outbound.write(contentsOf: parts)
                } catch {
                    // A coordinator that refused our certificate (TLS 1.3: an alert after the handshake) has closed
                    // the connection; the read side holds the TLS error that says why, the failed write does not.
                    do { for try await _ in inbound {} } catch let tls as TLSError { throw tls } catch {}
                    throw error
                }
                var status: HTTPResponseStatus?
                var received = ByteBuffer()
                for try await part in inbound {
                    switch part {
                    case .head(let head): status = head.status
                    case .body(var chunk): received.writeBuffer(&chunk)
                    case .end: return try Self.interpret(status: status, body: Data(received.readableBytesView))
                    }
                }
                throw AdminClientError(.failed, "the coordinator closed the connection before answering")
            }
        } catch let error as AdminClientError {
            throw error
        } catch let error as TLSError where error.kind == .certificateRefused {
            // TLS 1.3: the coordinator's verdict on our certificate arrives with the first read.
            throw AdminClientError(.notAuthorized, "the coordinator refused the certificate \(settings.cert ?? ""): \(error)")
        } catch {
            throw AdminClientError(.failed, "the admin API connection failed: \(error)")
        }
    }

    static func interpret(status: HTTPResponseStatus?, body: Data) throws -> Data {
        guard let status else { throw AdminClientError(.failed, "the coordinator sent no status line") }
        if (200..<300).contains(status.code) { return body }
        let detail = (try? JSONDecoder().decode(AdminErrorBody.self, from: body))?.message ?? String(decoding: body, as: UTF8.self)
        switch status.code {
        case 400, 409, 413: throw AdminClientError(.rejected, detail)
        case 403: throw AdminClientError(.notAuthorized, detail)
        case 404: throw AdminClientError(.notFound, detail)
        case 503: throw AdminClientError(.unavailable, detail)
        default: throw AdminClientError(.failed, "HTTP \(status.code): \(detail)")
        }
    }
}
