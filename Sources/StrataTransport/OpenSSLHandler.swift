import COpenSSL
import CStrataOpenSSLShim
import NIOCore
import NIOTLS

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Mutual TLS 1.3 over the system OpenSSL: ciphertext `ByteBuffer`s below, plaintext `ByteBuffer`s above.
///
/// - The handshake starts when the channel is active. On success the handler fires
///   `TLSPeerAuthenticated` and then `TLSUserEvent.handshakeCompleted(negotiatedProtocol: nil)`.
/// - Writes issued before the handshake completes are buffered and sent after it.
/// - `close(mode: .all)` sends close_notify and waits (up to `closeNotifyTimeout`) for the peer's
///   before closing the channel; the close promise completes then. `close(mode: .output)` sends
///   close_notify and half-closes the socket.
/// - Back-pressure: plaintext is delivered only while a `read()` is outstanding; the handler issues
///   `read()` on its own only to progress the handshake and to wait for the peer's close_notify.
///
/// Not thread-safe: like every channel handler it must only be used on its channel's event loop
/// (add it with `channel.pipeline.syncOperations.addHandler` from the channel initializer).
public final class OpenSSLHandler: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    /// The authenticated peer; set on the event loop when the handshake completes.
    public private(set) var peerIdentity: PeerIdentity?

    /// The negotiated cipher suite (e.g. "TLS_AES_256_GCM_SHA384") once the handshake has completed.
    public var negotiatedCipher: String? {
        guard let ssl = self.ssl, self.peerIdentity != nil, let name = strata_SSL_get_cipher(ssl) else { return nil }
        return String(cString: name)
    }

    /// Ciphertext held by the handler's BIO: received and not yet read by OpenSSL, written by OpenSSL and not
    /// yet passed to the channel (both zero on an idle connection).
    var bufferedCiphertext: (inbound: Int, outbound: Int) { (self.bio.inboundBytes, self.bio.outboundBytes) }

    private enum State {
        case idle  // channel not active yet
        case handshaking
        case active
        case outputClosed  // we sent close_notify (close(mode: .output)); still reading
        case closing  // we sent close_notify (close(mode: .all)); waiting for the peer's
        case closed
    }

    /// Plaintext record size; small writes are coalesced into records of this size.
    private static let recordSize = 16 * 1024
    /// Largest plaintext handed to one SSL_write_ex before draining the write BIO.
    private static let writeChunk = 64 * 1024
    /// Plaintext encrypted into one ciphertext buffer before it is written (see `encryptFlushedWrites`).
    static let batchSize = 256 * 1024

    private let tlsContext: TLSContext
    /// What the verify callback found wrong with the peer's identity (it outlives `ssl`, which points to it).
    private let verifyNote = VerifyNote()
    private let serverHostname: String?
    private var ssl: OpaquePointer?
    /// Both directions between OpenSSL and the network: received ciphertext buffers are queued in it
    /// without a copy, and OpenSSL's output goes straight into one outbound buffer. Its `BIO` is owned by `ssl`.
    private let bio: ByteBufferBIO

    private var state: State = .idle
    private var pendingWrites = CircularBuffer<(data: ByteBuffer, promise: EventLoopPromise<Void>?)>()
    /// How many of `pendingWrites` (from the front) have been flushed.
    private var flushedWriteCount = 0
    private var pendingPromises: [EventLoopPromise<Void>] = []
    /// Reused plaintext buffer that coalesces small writes into full records (allocated on first use).
    private var staging: UnsafeMutableRawBufferPointer?

    /// The layer above asked for data and has not received any since.
    private var readRequested = false
    /// Between a channelRead from below and the matching channelReadComplete.
    private var inReadCycle = false
    /// Plaintext was delivered during the current read cycle.
    private var deliveredInCycle = false
    /// A buffer the layer above lent for the rest of a large frame (`PlaintextReadTarget`): plaintext is
    /// decrypted into it until it holds `length` readable bytes, then it is delivered whole.
    private var readTarget: (buffer: ByteBuffer, length: Int)?
    /// Read targets taken since the handler was added (for tests and diagnostics).
    private(set) var readTargetsTaken = 0
    var holdsReadTarget: Bool { readTarget != nil }
    private var receivedCloseNotify = false
    private var receivedApplicationData = false

    private var handshakeTimer: Scheduled<Void>?
    private var closeTimer: Scheduled<Void>?
    private var closePromise: EventLoopPromise<Void>?

    /// - Parameters:
    ///   - context: the process's TLS context (server for the coordinator, client for agents and admins).
    ///   - serverHostname: client mode only; the peer's certificate SAN must match it (DNS name or IP
    ///     address, checked with `SSL_set1_host`); a DNS name is also sent as SNI.
    public init(context: TLSContext, serverHostname: String? = nil) throws {
        self.tlsContext = context
        self.serverHostname = serverHostname
        if serverHostname != nil && context.mode == .server {
            throw TLSError(kind: .configuration, detail: "serverHostname is only meaningful for a client-mode TLSContext")
        }
        let ssl = try context.makeSSL()
        SSL_set_ex_data(ssl, TLSContext.verifyNoteIndex, Unmanaged.passUnretained(self.verifyNote).toOpaque())
        let bio: ByteBufferBIO
        do {
            bio = try ByteBufferBIO()
        } catch {
            SSL_free(ssl)
            throw error
        }
        // The same BIO reads and writes; ssl takes its one reference (and frees it with itself).
        SSL_set_bio(ssl, bio.bio, bio.bio)
        self.ssl = ssl
        self.bio = bio

        switch context.mode {
        case .server:
            SSL_set_accept_state(ssl)
        case .client:
            SSL_set_connect_state(ssl)
            if let host = serverHostname {
                ERR_clear_error()
                // SSL_set1_host treats an IP address literal as an IP SAN to match.
                guard !host.isEmpty, SSL_set1_host(ssl, host) == 1 else {
                    let reasons = OpenSSLErrorQueue.drainStrings()
                    SSL_free(ssl)
                    self.ssl = nil
                    throw TLSError(kind: .configuration, reasons: reasons, detail: "invalid serverHostname '\(host)'")
                }
                if !Self.isIPAddress(host) {
                    _ = strata_SSL_set_tlsext_host_name(ssl, host)
                }
            }
        }
    }

    deinit {
        if let ssl = self.ssl {
            SSL_free(ssl)
        }
        self.staging?.deallocate()
    }

    private static func isIPAddress(_ host: String) -> Bool {
        var v4 = in_addr()
        var v6 = in6_addr()
        return inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1
    }

    // MARK: - Lifecycle

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive {
            self.startHandshake(context: context)
        }
    }

    public func handlerRemoved(context: ChannelHandlerContext) {
        self.cancelTimers()
        let error = ChannelError.ioOnClosedChannel
        self.failPendingWrites(error)
        if let promise = self.closePromise {
            self.closePromise = nil
            promise.fail(error)
        }
        self.state = .closed
        if let ssl = self.ssl {
            self.ssl = nil
            SSL_free(ssl)
        }
        self.bio.reset()
        self.readTarget = nil
        self.staging?.deallocate()
        self.staging = nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        self.startHandshake(context: context)
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        let previous = self.state
        self.state = .closed
        self.cancelTimers()
        switch previous {
        case .idle, .closed:
            break
        case .handshaking:
            // Alerts that arrived were already processed in channelRead; this is a bare EOF.
            context.fireErrorCaught(TLSError(
                kind: .handshakeFailed,
                detail: "the peer closed the connection during the TLS handshake"
            ))
        case .active, .outputClosed:
            // Deliver what was received (ignoring read demand: the connection is gone) and see
            // whether it ended with close_notify.
            self.decodeAndDeliver(context: context, force: true)
            if self.deliveredInCycle && !self.inReadCycle {
                self.deliveredInCycle = false
                context.fireChannelReadComplete()
            }
            if !self.receivedCloseNotify {
                // A TLS 1.3 server that refuses a client's certificate may just close: the client then sees
                // the connection end before any byte of application data.
                let early = self.tlsContext.mode == .client && !self.receivedApplicationData
                context.fireErrorCaught(TLSError(
                    kind: .uncleanShutdown,
                    detail: early
                        ? "the peer closed the connection right after the handshake, before sending anything: it may have refused our certificate"
                        : "the peer closed the TCP connection without sending TLS close_notify"
                ))
            }
        case .closing:
            // We were waiting for the peer's close_notify; the connection is closed anyway.
            break
        }
        self.failPendingWrites(ChannelError.ioOnClosedChannel)
        if let promise = self.closePromise {
            self.closePromise = nil
            promise.succeed(())
        }
        context.fireChannelInactive()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let channelEvent = event as? ChannelEvent, channelEvent == .inputClosed {
            switch self.state {
            case .active, .outputClosed:
                self.decodeAndDeliver(context: context, force: true)
                if self.deliveredInCycle && !self.inReadCycle {
                    self.deliveredInCycle = false
                    context.fireChannelReadComplete()
                }
                if self.state != .closed && !self.receivedCloseNotify {
                    self.failAndClose(context: context, error: TLSError(
                        kind: .uncleanShutdown,
                        detail: "the peer closed its side of the TCP connection without sending TLS close_notify"
                    ))
                }
            case .handshaking:
                self.failAndClose(context: context, error: TLSError(
                    kind: .handshakeFailed,
                    detail: "the peer closed the connection during the TLS handshake"
                ))
            case .closing:
                self.closeUnderlying(context: context)
            case .idle, .closed:
                break
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    // MARK: - Handshake

    private func startHandshake(context: ChannelHandlerContext) {
        guard self.state == .idle else { return }
        self.state = .handshaking
        let timeout = self.tlsContext.configuration.handshakeTimeout
        self.handshakeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
            self.handshakeTimedOut(context: context)
        }
        self.handshakeStep(context: context)
        if self.state == .handshaking {
            context.read()
        }
    }

    private func handshakeTimedOut(context: ChannelHandlerContext) {
        guard self.state == .handshaking || self.state == .idle else { return }
        let seconds = Double(self.tlsContext.configuration.handshakeTimeout.nanoseconds) / 1e9
        self.failAndClose(context: context, error: TLSError(
            kind: .handshakeTimeout,
            detail: "no TLS handshake completed within \(seconds) s"
        ))
    }

    private func handshakeStep(context: ChannelHandlerContext) {
        guard let ssl = self.ssl else { return }
        ERR_clear_error()
        let rc = SSL_do_handshake(ssl)
        if rc == 1 {
            self.writeNetworkOutput(context: context)
            self.handshakeCompleted(context: context, ssl: ssl)
            return
        }
        let code = SSL_get_error(ssl, rc)
        switch code {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            self.writeNetworkOutput(context: context)
        default:
            let error = self.handshakeError(ssl: ssl, returnCode: rc, errorCode: code)
            // Send the alert OpenSSL produced so the peer learns why.
            self.writeNetworkOutput(context: context)
            self.failAndClose(context: context, error: error)
        }
    }

    private func handshakeError(ssl: OpaquePointer, returnCode: Int32, errorCode: Int32? = nil) -> TLSError {
        let entries = OpenSSLErrorQueue.drain()
        var reasons = entries.map(\.text)
        var kind = TLSError.Kind.handshakeFailed
        var detail: String? = nil
        let verifyResult = SSL_get_verify_result(ssl)
        if verifyResult != X509_V_OK {
            reasons.append("certificate verification: " + OpenSSLErrorQueue.verifyResultText(verifyResult))
            if verifyResult == X509_V_ERR_APPLICATION_VERIFICATION {
                kind = .peerIdentityInvalid
                detail = self.verifyNote.identityProblem
                    ?? "the peer's certificate is trusted but has no valid Strata identity (Subject OU role and CN)"
            } else if verifyResult == X509_V_ERR_CERT_REVOKED {
                kind = .peerCertificateRevoked
                detail = "the peer's certificate is on the revocation list (\(self.tlsContext.configuration.revocationListFile ?? "CRL"))"
            } else if verifyResult == X509_V_ERR_UNABLE_TO_GET_CRL || verifyResult == X509_V_ERR_CRL_HAS_EXPIRED {
                detail = "our revocation list cannot vouch for the peer (\(OpenSSLErrorQueue.verifyResultText(verifyResult))): "
                    + "every peer is refused until a valid CRL is loaded (Certs/strata-pki.sh crl, then SIGHUP)"
            } else if verifyResult == X509_V_ERR_HOSTNAME_MISMATCH || verifyResult == X509_V_ERR_IP_ADDRESS_MISMATCH {
                detail = "the server certificate does not name '\(self.serverHostname ?? "")' in its subjectAltName"
            }
        }
        if entries.contains(where: { $0.reasonCode == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE }) {
            kind = .peerCertificateMissing
            detail = "the peer did not send a certificate"
        }
        if reasons.isEmpty, let errorCode {
            reasons.append("SSL_do_handshake failed (SSL_get_error \(errorCode), errno \(errno))")
        }
        return TLSError(kind: kind, reasons: reasons, detail: detail)
    }

    private func handshakeCompleted(context: ChannelHandlerContext, ssl: OpaquePointer) {
        self.handshakeTimer?.cancel()
        self.handshakeTimer = nil
        guard let cert = SSL_get1_peer_certificate(ssl) else {
            self.failAndClose(context: context, error: TLSError(
                kind: .peerCertificateMissing,
                detail: "the handshake completed without a peer certificate"
            ))
            return
        }
        let parsed = PeerIdentity.parse(certificate: cert)
        X509_free(cert)
        let identity: PeerIdentity
        switch parsed {
        case .success(let value):
            identity = value
        case .failure(let error):
            self.failAndClose(context: context, error: error)
            return
        }
        self.peerIdentity = identity
        self.state = .active
        context.fireUserInboundEventTriggered(TLSPeerAuthenticated(identity: identity))
        guard self.state == .active else { return }
        context.fireUserInboundEventTriggered(TLSUserEvent.handshakeCompleted(negotiatedProtocol: nil))
        guard self.state == .active else { return }
        self.encryptFlushedWrites(context: context)
        // Application data may have arrived together with the handshake's last flight.
        if self.readRequested && self.hasBufferedCiphertext {
            self.decodeAndDeliver(context: context, force: false)
            if self.deliveredInCycle && !self.inReadCycle {
                self.completeReadCycle(context: context)
            }
        }
    }

    // MARK: - Inbound

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = self.unwrapInboundIn(data)
        guard self.state != .closed, self.ssl != nil else { return }
        self.inReadCycle = true
        if !self.feedReadBIO(buffer) {
            self.failAndClose(context: context, error: TLSError(
                kind: .protocolError,
                reasons: OpenSSLErrorQueue.drainStrings(),
                detail: "could not buffer received data"
            ))
            return
        }
        switch self.state {
        case .idle:
            break
        case .handshaking:
            self.handshakeStep(context: context)
        case .active, .outputClosed:
            if self.readRequested {
                self.decodeAndDeliver(context: context, force: false)
            }
        case .closing:
            self.awaitCloseNotify(context: context)
        case .closed:
            break
        }
    }

    public func channelReadComplete(context: ChannelHandlerContext) {
        self.inReadCycle = false
        switch self.state {
        case .handshaking, .closing:
            // Reads that the handshake or the closing exchange need.
            context.read()
        case .active, .outputClosed:
            if self.deliveredInCycle {
                self.completeReadCycle(context: context)
            } else if self.readRequested {
                // The ciphertext received (partial record, post-handshake message) produced no
                // plaintext: the read the layer above asked for is still owed.
                context.read()
            }
        case .idle, .closed:
            if self.deliveredInCycle {
                self.deliveredInCycle = false
                context.fireChannelReadComplete()
            }
        }
    }

    private func completeReadCycle(context: ChannelHandlerContext) {
        self.deliveredInCycle = false
        self.readRequested = false
        context.fireChannelReadComplete()
    }

    private var hasBufferedCiphertext: Bool {
        guard let ssl = self.ssl else { return false }
        return self.bio.inboundBytes > 0 || SSL_pending(ssl) > 0
    }

    /// Queues received ciphertext for OpenSSL (kept as it is, not copied).
    private func feedReadBIO(_ buffer: ByteBuffer) -> Bool {
        self.bio.receive(buffer)
        return true
    }

    /// Decrypts everything decodable in the read BIO and fires it upward.
    /// - Parameter force: deliver even without an outstanding `read()` (used when the connection ends).
    private func decodeAndDeliver(context: ChannelHandlerContext, force: Bool) {
        guard let ssl = self.ssl else { return }
        guard force || self.readRequested else { return }
        var output: ByteBuffer? = nil
        // Set while `output` is a buffer lent from above: the readable bytes it must reach.
        var outputLength: Int? = nil
        var failure: TLSError? = nil
        var sawCloseNotify = false
        decoding: while true {
            let needsBuffer = output.map { buffer in
                outputLength.map { buffer.readableBytes >= $0 } ?? (buffer.writableBytes == 0)
            } ?? true
            if needsBuffer {
                if let full = output, full.readableBytes > 0 {
                    self.deliver(context: context, full)   // may lend a read target (the next frame's buffer)
                }
                if let target = self.readTarget {
                    self.readTarget = nil
                    output = target.buffer
                    outputLength = target.length
                } else {
                    // Plaintext is never larger than the ciphertext it comes from.
                    let hint = max(self.bio.inboundBytes, Int(SSL_pending(ssl)), 256)
                    output = context.channel.allocator.buffer(capacity: min(hint, 256 * 1024))
                    outputLength = nil
                }
            }
            // A lent buffer takes exactly the rest of its frame; what follows goes to the next buffer.
            let limit = outputLength.map { $0 - output!.readableBytes } ?? Int.max
            var rc: Int32 = 0
            ERR_clear_error()
            output!.writeWithUnsafeMutableBytes(minimumWritableBytes: outputLength == nil ? 0 : limit) { target -> Int in
                var count = 0
                rc = SSL_read_ex(ssl, target.baseAddress, min(target.count, limit), &count)
                return rc == 1 ? count : 0
            }
            if rc == 1 { continue }
            let code = SSL_get_error(ssl, rc)
            switch code {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                break decoding
            case SSL_ERROR_ZERO_RETURN:
                sawCloseNotify = true
                break decoding
            default:
                failure = self.readError(ssl: ssl, errorCode: code)
                break decoding
            }
        }
        if let output, let outputLength, failure == nil, !sawCloseNotify, !force {
            // The frame's buffer is not complete yet: it goes on filling with the next ciphertext.
            self.readTarget = (output, outputLength)
        } else if let output, output.readableBytes > 0 {
            // Also a lent buffer when the connection ends: the layer above sees the frame is incomplete.
            self.deliver(context: context, output)
        }
        if let failure {
            self.writeNetworkOutput(context: context)
            self.failAndClose(context: context, error: failure)
            return
        }
        // Post-handshake messages (e.g. KeyUpdate) may have produced a reply.
        self.writeNetworkOutput(context: context)
        if sawCloseNotify {
            self.peerSentCloseNotify(context: context)
        }
    }

    private func deliver(context: ChannelHandlerContext, _ plaintext: ByteBuffer) {
        self.receivedApplicationData = true
        self.deliveredInCycle = true
        context.fireChannelRead(self.wrapInboundOut(plaintext))
    }

    private func readError(ssl: OpaquePointer, errorCode: Int32) -> TLSError {
        let entries = OpenSSLErrorQueue.drain()
        var reasons = entries.map(\.text)
        if reasons.isEmpty {
            reasons.append("SSL_read_ex failed (SSL_get_error \(errorCode))")
        }
        if !self.receivedApplicationData, self.tlsContext.mode == .client, let alert = entries.lazy.compactMap(\.receivedAlert).first {
            // TLS 1.3: a client finishes its handshake before the server has checked the client's
            // certificate, so a rejection arrives as an alert on the first read.
            return TLSError(
                kind: .certificateRefused,
                reasons: reasons,
                detail: "the peer refused our certificate right after the handshake (TLS alert \(alert)): most likely \(alert.likelyCause)"
            )
        }
        if !self.receivedApplicationData && reasons.contains(where: { $0.contains("alert") }) {
            return TLSError(
                kind: .handshakeFailed,
                reasons: reasons,
                detail: "the peer rejected the connection after the handshake (most likely our certificate)"
            )
        }
        return TLSError(kind: .readFailed, reasons: reasons)
    }

    private func peerSentCloseNotify(context: ChannelHandlerContext) {
        self.receivedCloseNotify = true
        guard let ssl = self.ssl else { return }
        switch self.state {
        case .active, .outputClosed, .closing:
            // Answer with our close_notify (a no-op if we already sent it), then close.
            ERR_clear_error()
            _ = SSL_shutdown(ssl)
            ERR_clear_error()
            self.writeNetworkOutput(context: context)
            self.closeUnderlying(context: context)
        case .idle, .handshaking, .closed:
            break
        }
    }

    // MARK: - Outbound

    public func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        // A read target is taken only while application data flows, and one at a time.
        if let target = event as? PlaintextReadTarget, self.state == .active || self.state == .outputClosed,
           self.readTarget == nil, let buffer = target.take() {
            self.readTarget = (buffer, target.length)
            self.readTargetsTaken += 1
            promise?.succeed(())
            return
        }
        context.triggerUserOutboundEvent(event, promise: promise)
    }

    public func read(context: ChannelHandlerContext) {
        switch self.state {
        case .active, .outputClosed:
            self.readRequested = true
            if self.hasBufferedCiphertext {
                self.decodeAndDeliver(context: context, force: false)
                if self.deliveredInCycle {
                    if !self.inReadCycle {
                        self.completeReadCycle(context: context)
                        // The channel's auto-read spent its read() on plaintext we had buffered: ask the
                        // socket for more, or a connection whose data all arrived early stops reading for good.
                        context.read()
                    }
                    return
                }
                guard self.state == .active || self.state == .outputClosed else { return }
            }
            context.read()
        case .idle, .handshaking:
            self.readRequested = true
            context.read()
        case .closing, .closed:
            context.read()
        }
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        // Flushed plaintext left unencrypted while the socket was full (see `encryptFlushedWrites`).
        if context.channel.isWritable, self.state == .active, self.flushedWriteCount > 0 {
            self.encryptFlushedWrites(context: context)
        }
        context.fireChannelWritabilityChanged()
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch self.state {
        case .idle, .handshaking, .active:
            self.pendingWrites.append((data: self.unwrapOutboundIn(data), promise: promise))
        case .outputClosed, .closing, .closed:
            promise?.fail(ChannelError.outputClosed)
        }
    }

    public func flush(context: ChannelHandlerContext) {
        self.flushedWriteCount = self.pendingWrites.count
        if self.state == .active {
            self.encryptFlushedWrites(context: context)
        }
    }

    public func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        switch mode {
        case .input:
            context.close(mode: .input, promise: promise)
            return
        case .output:
            guard self.state == .active, let ssl = self.ssl else {
                if self.state == .idle || self.state == .handshaking {
                    self.failPendingWrites(ChannelError.outputClosed)
                }
                context.close(mode: .output, promise: promise)
                return
            }
            self.encryptFlushedWrites(context: context, all: true)
            self.failPendingWrites(ChannelError.outputClosed)
            self.state = .outputClosed
            ERR_clear_error()
            _ = SSL_shutdown(ssl)
            ERR_clear_error()
            self.writeNetworkOutput(context: context)
            context.close(mode: .output, promise: promise)
        case .all:
            self.closeAll(context: context, promise: promise)
        }
    }

    private func closeAll(context: ChannelHandlerContext, promise: EventLoopPromise<Void>?) {
        switch self.state {
        case .idle, .handshaking:
            self.closePromise = self.combine(self.closePromise, promise, context: context)
            self.closeUnderlying(context: context)
        case .active, .outputClosed:
            guard let ssl = self.ssl else {
                self.closePromise = self.combine(self.closePromise, promise, context: context)
                self.closeUnderlying(context: context)
                return
            }
            if self.state == .active {
                self.encryptFlushedWrites(context: context, all: true)
            }
            self.state = .closing
            self.closePromise = self.combine(self.closePromise, promise, context: context)
            self.failPendingWrites(ChannelError.outputClosed)
            ERR_clear_error()
            let rc = SSL_shutdown(ssl)
            ERR_clear_error()
            self.writeNetworkOutput(context: context)
            if rc == 1 || self.receivedCloseNotify {
                self.closeUnderlying(context: context)
                return
            }
            let timeout = self.tlsContext.configuration.closeNotifyTimeout
            self.closeTimer = context.eventLoop.assumeIsolated().scheduleTask(in: timeout) {
                self.closeNotifyTimedOut(context: context)
            }
            self.awaitCloseNotify(context: context)
            if self.state == .closing {
                context.read()
            }
        case .closing:
            self.closePromise = self.combine(self.closePromise, promise, context: context)
        case .closed:
            promise?.fail(ChannelError.alreadyClosed)
        }
    }

    /// In `.closing`: consume (and discard) data until the peer's close_notify, then close.
    private func awaitCloseNotify(context: ChannelHandlerContext) {
        guard self.state == .closing, let ssl = self.ssl else { return }
        let scratch = self.stagingBuffer()
        while true {
            var count = 0
            ERR_clear_error()
            let rc = SSL_read_ex(ssl, scratch.baseAddress, scratch.count, &count)
            if rc == 1 { continue }  // application data after our close_notify: discarded
            let code = SSL_get_error(ssl, rc)
            if code == SSL_ERROR_ZERO_RETURN {
                ERR_clear_error()
                self.receivedCloseNotify = true
                self.closeUnderlying(context: context)
            } else if code != SSL_ERROR_WANT_READ && code != SSL_ERROR_WANT_WRITE {
                // A broken shutdown: close without waiting any longer.
                ERR_clear_error()
                self.closeUnderlying(context: context)
            }
            return
        }
    }

    private func closeNotifyTimedOut(context: ChannelHandlerContext) {
        guard self.state == .closing else { return }
        let seconds = Double(self.tlsContext.configuration.closeNotifyTimeout.nanoseconds) / 1e9
        let error = TLSError(kind: .closeNotifyTimeout, detail: "no close_notify from the peer within \(seconds) s")
        context.fireErrorCaught(error)
        self.closeUnderlying(context: context, error: error)
    }

    // MARK: - Encryption

    private func stagingBuffer() -> UnsafeMutableRawBufferPointer {
        if let staging = self.staging { return staging }
        let staging = UnsafeMutableRawBufferPointer.allocate(byteCount: Self.recordSize, alignment: 16)
        self.staging = staging
        return staging
    }

    /// Encrypts flushed writes in batches of about `batchSize` plaintext bytes, coalescing small writes into
    /// full records; each batch leaves as one ciphertext buffer. Batches continue while the channel is
    /// writable (or, with `all`, regardless: before close_notify); otherwise the rest waits for
    /// `channelWritabilityChanged`, so a large frame sent to many slow peers is not all encrypted at once
    /// (the ciphertext held per connection stays around one batch plus the socket's high-water mark).
    /// A write's promise completes with the batch holding its last byte.
    private func encryptFlushedWrites(context: ChannelHandlerContext, all: Bool = false) {
        while self.flushedWriteCount > 0, self.ssl != nil {
            if !all && !context.channel.isWritable { return }
            guard self.encryptBatch(context: context) else { return }
        }
    }

    /// One batch; false if it failed (the connection is then being closed).
    private func encryptBatch(context: ChannelHandlerContext) -> Bool {
        var total = 0
        var entries = 0
        for index in 0..<self.flushedWriteCount where total < Self.batchSize {
            total += self.pendingWrites[self.pendingWrites.index(self.pendingWrites.startIndex, offsetBy: index)].data.readableBytes
            entries += 1
        }
        total = min(total, Self.batchSize)
        // TLS 1.3 adds 22 bytes per record (header, content type, AEAD tag).
        let records = total / Self.recordSize + entries + 1
        // OpenSSL writes the records straight into one buffer of this size (see ByteBufferBIO).
        self.bio.outboundCapacityHint = total + records * 32
        self.pendingPromises.removeAll(keepingCapacity: true)
        let staging = self.stagingBuffer()
        var stagingUsed = 0
        var failure: TLSError? = nil
        var budget = Self.batchSize

        while self.flushedWriteCount > 0, budget > 0, failure == nil {
            var entry = self.pendingWrites.removeFirst()
            let length = min(entry.data.readableBytes, budget)
            entry.data.withUnsafeReadableBytes { all in
                let bytes = UnsafeRawBufferPointer(rebasing: all[0..<length])
                var offset = 0
                while offset < bytes.count, failure == nil {
                    let remaining = bytes.count - offset
                    if stagingUsed == 0 && remaining >= Self.recordSize {
                        // Whole records straight from the caller's buffer.
                        let direct = remaining - remaining % Self.recordSize
                        failure = self.encrypt(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + direct)]))
                        offset += direct
                    } else {
                        let take = min(remaining, Self.recordSize - stagingUsed)
                        (staging.baseAddress! + stagingUsed).copyMemory(from: bytes.baseAddress! + offset, byteCount: take)
                        stagingUsed += take
                        offset += take
                        if stagingUsed == Self.recordSize {
                            failure = self.encrypt(UnsafeRawBufferPointer(staging))
                            stagingUsed = 0
                        }
                    }
                }
            }
            entry.data.moveReaderIndex(forwardBy: length)
            budget -= length
            if entry.data.readableBytes == 0 {
                self.flushedWriteCount -= 1
                if let promise = entry.promise { self.pendingPromises.append(promise) }
            } else {
                self.pendingWrites.prepend(entry)
            }
        }
        if failure == nil && stagingUsed > 0 {
            failure = self.encrypt(UnsafeRawBufferPointer(rebasing: staging[0..<stagingUsed]))
        }
        let promises = self.pendingPromises
        self.pendingPromises.removeAll(keepingCapacity: true)
        let output = self.bio.takeOutbound()
        if let failure {
            for promise in promises { promise.fail(failure) }
            self.failAndClose(context: context, error: failure)
            return false
        }
        let writePromise: EventLoopPromise<Void>?
        switch promises.count {
        case 0: writePromise = nil
        case 1: writePromise = promises[0]
        default:
            let combined = context.eventLoop.makePromise(of: Void.self)
            for promise in promises { combined.futureResult.cascade(to: promise) }
            writePromise = combined
        }
        if let output {
            context.write(self.wrapOutboundOut(output), promise: writePromise)
            context.flush()
        } else {
            writePromise?.succeed(())
        }
        return true
    }

    /// SSL_write_ex of `plaintext` in chunks; the records accumulate in the BIO's outbound buffer.
    private func encrypt(_ plaintext: UnsafeRawBufferPointer) -> TLSError? {
        guard let ssl = self.ssl else {
            return TLSError(kind: .protocolError, detail: "write after the TLS session was released")
        }
        var offset = 0
        while offset < plaintext.count {
            let chunk = min(plaintext.count - offset, Self.writeChunk)
            var written = 0
            ERR_clear_error()
            let rc = SSL_write_ex(ssl, plaintext.baseAddress! + offset, chunk, &written)
            if rc != 1 {
                let code = SSL_get_error(ssl, rc)
                var reasons = OpenSSLErrorQueue.drainStrings()
                if reasons.isEmpty { reasons.append("SSL_write_ex failed (SSL_get_error \(code))") }
                return TLSError(kind: .writeFailed, reasons: reasons)
            }
            offset += written
        }
        return nil
    }

    /// Sends whatever OpenSSL wrote into the write BIO (handshake messages, alerts, close_notify).
    private func writeNetworkOutput(context: ChannelHandlerContext) {
        guard self.ssl != nil, let output = self.bio.takeOutbound() else { return }
        context.write(self.wrapOutboundOut(output), promise: nil)
        context.flush()
    }

    // MARK: - Failure and closing

    private func failPendingWrites(_ error: Error) {
        self.flushedWriteCount = 0
        while let (_, promise) = self.pendingWrites.popFirst() {
            promise?.fail(error)
        }
    }

    private func cancelTimers() {
        self.handshakeTimer?.cancel()
        self.handshakeTimer = nil
        self.closeTimer?.cancel()
        self.closeTimer = nil
    }

    private func combine(
        _ first: EventLoopPromise<Void>?,
        _ second: EventLoopPromise<Void>?,
        context: ChannelHandlerContext
    ) -> EventLoopPromise<Void>? {
        guard let first else { return second }
        guard let second else { return first }
        first.futureResult.cascade(to: second)
        return first
    }

    /// Reports `error` up the pipeline and closes the connection without waiting for close_notify.
    private func failAndClose(context: ChannelHandlerContext, error: TLSError) {
        guard self.state != .closed else { return }
        self.state = .closed
        self.cancelTimers()
        self.failPendingWrites(error)
        context.fireErrorCaught(error)
        self.closeUnderlying(context: context)
    }

    /// Closes the channel below us; completes the pending close promise when that is done.
    private func closeUnderlying(context: ChannelHandlerContext, error: TLSError? = nil) {
        self.state = .closed
        self.cancelTimers()
        self.failPendingWrites(ChannelError.ioOnClosedChannel)
        let promise = self.closePromise
        self.closePromise = nil
        guard let promise else {
            context.close(promise: nil)
            return
        }
        let closed = context.eventLoop.makePromise(of: Void.self)
        closed.futureResult.whenComplete { result in
            if let error {
                promise.fail(error)
            } else if case .failure(let closeError) = result, !(closeError is ChannelError && (closeError as! ChannelError) == .alreadyClosed) {
                promise.fail(closeError)
            } else {
                promise.succeed(())
            }
        }
        context.close(promise: closed)
    }
}
