import COpenSSL
import CStrataOpenSSLShim
import NIOConcurrencyHelpers
import NIOCore

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Files and timeouts of one side of Strata's mutual TLS.
public struct TLSConfiguration: Sendable {
    /// PEM file with our certificate (first) and any intermediates.
    public var certificateChainFile: String
    /// PEM file with the private key of the certificate.
    public var privateKeyFile: String
    /// The federation CA (PEM). Peers must present a certificate issued by it.
    public var trustRootsFile: String
    /// How long a handshake may take before the connection is closed. Default 10 s.
    public var handshakeTimeout: TimeAmount
    /// How long to wait for the peer's close_notify after sending ours. Default 3 s.
    public var closeNotifyTimeout: TimeAmount
    /// TLS 1.3 cipher suites in order of preference, colon-separated OpenSSL names (nil: OpenSSL's default,
    /// TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256). A server uses its own order.
    public var cipherSuites: String?
    /// A PEM file with the federation CA's certificate revocation list (CRL). When set, a peer certificate whose
    /// serial is listed is refused during the handshake, and so is every peer if the list is missing, expired or
    /// not signed by the CA (fail closed). Only the leaf is checked: Strata's CA signs leaves directly
    /// (pathlen 0), so there is no intermediate to revoke. `TLSContext.reloadRevocationList()` re-reads it.
    public var revocationListFile: String?

    public init(
        certificateChainFile: String,
        privateKeyFile: String,
        trustRootsFile: String,
        handshakeTimeout: TimeAmount = .seconds(10),
        closeNotifyTimeout: TimeAmount = .seconds(3),
        cipherSuites: String? = nil,
        revocationListFile: String? = nil
    ) {
        self.cipherSuites = cipherSuites
        self.revocationListFile = revocationListFile
        self.certificateChainFile = certificateChainFile
        self.privateKeyFile = privateKeyFile
        self.trustRootsFile = trustRootsFile
        self.handshakeTimeout = handshakeTimeout
        self.closeNotifyTimeout = closeNotifyTimeout
    }
}

/// One `SSL_CTX` per process role: TLS 1.3 only, a peer certificate required in both directions and
/// verified against `trustRootsFile` (and the CRL, if configured), our private key checked against our
/// certificate. Thread-safe: share one context among all connections of a process.
///
/// Revocation: peers are verified against a `VerifyStore` (CA + CRL) that every new connection takes a
/// reference to. `reloadRevocationList()` builds a complete new store and swaps the pointer under a lock; a
/// connection keeps the store it started with (OpenSSL reference-counts it), so no store is ever modified
/// while a handshake reads it, and a failed reload leaves the current store in place.
public final class TLSContext: @unchecked Sendable {
    public enum Mode: Sendable { case server, client }

    public let configuration: TLSConfiguration
    public let mode: Mode
    /// The identity in our own certificate (role from OU, id from CN).
    public let localIdentity: PeerIdentity

    /// The `SSL_CTX*`. Immutable after init; OpenSSL allows concurrent `SSL_new` on it.
    let sslContext: OpaquePointer
    /// The CA + CRL store new connections verify their peer against (nil without a CRL: the SSL_CTX's own store).
    private let verifyStore: NIOLockedValueBox<VerifyStore?>

    /// The revocation list in use (nil when none is configured).
    public var revocationList: RevocationListInfo? { verifyStore.withLockedValue { $0?.info } }

    /// Index of the per-connection `VerifyNote` in the SSL's ex_data.
    static let verifyNoteIndex: Int32 = strata_SSL_get_ex_new_index()

    /// The OpenSSL this process runs with (`3.0.17 1 Jul 2025`): the shared library's answer, not the headers'.
    public static var openSSLVersion: String {
        guard let text = OpenSSL_version(0).map({ String(cString: $0) }) else { return "unknown" }
        return text.hasPrefix("OpenSSL ") ? String(text.dropFirst(8)) : text
    }

    public convenience init(configuration: TLSConfiguration, mode: Mode) throws {
        try self.init(configuration: configuration, mode: mode, checkOwnIdentity: true)
    }

    /// `checkOwnIdentity: false` is for tests that need a misissued certificate on one side.
    init(configuration: TLSConfiguration, mode: Mode, checkOwnIdentity: Bool) throws {
        self.configuration = configuration
        self.mode = mode

        ERR_clear_error()
        guard let ctx = SSL_CTX_new(mode == .server ? TLS_server_method() : TLS_client_method()) else {
            throw TLSError(kind: .configuration, reasons: OpenSSLErrorQueue.drainStrings(), detail: "SSL_CTX_new failed")
        }
        // From here on `ctx` must be freed on every error path.
        var store: VerifyStore? = nil
        do {
            try Self.configure(ctx, configuration: configuration, mode: mode)
            if let crl = configuration.revocationListFile {
                store = try VerifyStore(caFile: configuration.trustRootsFile, crlFile: crl)
                // Also on the SSL_CTX: a connection that somehow lacked the store would fail closed (no CRL found).
                _ = X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), strata_X509_V_FLAG_CRL_CHECK())
            }
            if checkOwnIdentity {
                self.localIdentity = try Self.ownIdentity(ctx, configuration: configuration)
            } else {
                self.localIdentity = PeerIdentity(
                    commonName: "unchecked", role: .agent, subject: "", serialNumber: "", fingerprintSHA256: "")
            }
        } catch {
            SSL_CTX_free(ctx)
            throw error
        }
        self.sslContext = ctx
        self.verifyStore = NIOLockedValueBox(store)
    }

    deinit {
        SSL_CTX_free(self.sslContext)
    }

    /// A new `SSL*` for one connection, verifying its peer with the current CA + CRL store.
    func makeSSL() throws -> OpaquePointer {
        ERR_clear_error()
        guard let ssl = SSL_new(self.sslContext) else {
            throw TLSError(kind: .configuration, reasons: OpenSSLErrorQueue.drainStrings(), detail: "SSL_new failed")
        }
        // The store's reference is taken under the lock, so a concurrent reload cannot free it in between.
        let attached = self.verifyStore.withLockedValue { store -> Bool in
            guard let store else { return true }
            return strata_SSL_set1_verify_cert_store(ssl, store.store) == 1
        }
        guard attached else {
            SSL_free(ssl)
            throw TLSError(kind: .configuration, reasons: OpenSSLErrorQueue.drainStrings(), detail: "cannot attach the CRL store to a connection")
        }
        return ssl
    }

    /// Re-reads the CA and the CRL file (`configuration.revocationListFile`) into a new store used by every
    /// connection made from now on. On failure the current list stays in use and the error says why.
    @discardableResult
    public func reloadRevocationList() throws -> RevocationListInfo {
        guard let crl = configuration.revocationListFile else {
            throw TLSError(kind: .configuration, detail: "no revocation list (--crl) is configured")
        }
        let store = try VerifyStore(caFile: configuration.trustRootsFile, crlFile: crl)
        self.verifyStore.withLockedValue { $0 = store }
        return store.info
    }

    private static func check(_ ok: Bool, _ detail: @autoclosure () -> String) throws {
        if !ok {
            throw TLSError(kind: .configuration, reasons: OpenSSLErrorQueue.drainStrings(), detail: detail())
        }
    }

    private static func requireReadableFile(_ path: String, _ what: String) throws {
        guard !path.isEmpty else {
            throw TLSError(kind: .configuration, detail: "no \(what) file configured")
        }
        guard access(path, R_OK) == 0 else {
            let reason = String(cString: strerror(errno))
            throw TLSError(kind: .configuration, detail: "cannot read \(what) file '\(path)': \(reason)")
        }
    }

    private static func configure(_ ctx: OpaquePointer, configuration: TLSConfiguration, mode: Mode) throws {
        try requireReadableFile(configuration.certificateChainFile, "certificate chain")
        try requireReadableFile(configuration.privateKeyFile, "private key")
        try requireReadableFile(configuration.trustRootsFile, "trust roots (CA)")

        ERR_clear_error()
        try check(strata_SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) == 1, "cannot require TLS 1.3")
        try check(strata_SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) == 1, "cannot require TLS 1.3")
        SSL_CTX_set_options(ctx, strata_SSL_OP_NO_COMPRESSION() | strata_SSL_OP_NO_RENEGOTIATION() | strata_SSL_OP_NO_TICKET())
        // No session resumption: every connection authenticates with a full certificate exchange.
        _ = strata_SSL_CTX_set_session_cache_mode(ctx, strata_SSL_SESS_CACHE_OFF())
        _ = SSL_CTX_set_num_tickets(ctx, 0)
        // OpenSSL frees a connection's record buffers (about 34 KiB) whenever they are empty: an idle session
        // keeps none, which matters with thousands of sessions; a busy one re-allocates them per burst.
        _ = strata_SSL_CTX_set_mode(ctx, Int(SSL_MODE_RELEASE_BUFFERS))
        if let suites = configuration.cipherSuites {
            try check(!suites.isEmpty && SSL_CTX_set_ciphersuites(ctx, suites) == 1,
                      "cannot use TLS 1.3 cipher suites '\(suites)'; use names from `openssl ciphers -s -tls1_3`, e.g. TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384")
        }
        if mode == .server {
            // The coordinator's order decides, so its operator's policy holds whatever the agents prefer.
            SSL_CTX_set_options(ctx, strata_SSL_OP_CIPHER_SERVER_PREFERENCE())
        }

        try check(
            SSL_CTX_use_certificate_chain_file(ctx, configuration.certificateChainFile) == 1,
            "cannot load certificate chain file '\(configuration.certificateChainFile)' (expected PEM)"
        )
        try check(
            SSL_CTX_use_PrivateKey_file(ctx, configuration.privateKeyFile, SSL_FILETYPE_PEM) == 1,
            "cannot load private key file '\(configuration.privateKeyFile)' (expected an unencrypted PEM key that "
                + "belongs to certificate '\(configuration.certificateChainFile)')"
        )
        try check(
            SSL_CTX_check_private_key(ctx) == 1,
            "private key '\(configuration.privateKeyFile)' does not belong to certificate '\(configuration.certificateChainFile)'"
        )
        try check(
            SSL_CTX_load_verify_locations(ctx, configuration.trustRootsFile, nil) == 1,
            "cannot load trust roots file '\(configuration.trustRootsFile)' (expected PEM CA certificates)"
        )
        if mode == .server {
            // Tell clients which CA we accept (helps tools such as openssl s_client pick a certificate).
            if let names = SSL_load_client_CA_file(configuration.trustRootsFile) {
                SSL_CTX_set_client_CA_list(ctx, names)
            }
            ERR_clear_error()
        }
        SSL_CTX_set_verify_depth(ctx, 4)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT) { preverify, store in
            strataVerifyCallback(preverify, store)
        }
    }

    private static func ownIdentity(_ ctx: OpaquePointer, configuration: TLSConfiguration) throws -> PeerIdentity {
        guard let cert = SSL_CTX_get0_certificate(ctx) else {
            throw TLSError(kind: .configuration, detail: "no certificate loaded from '\(configuration.certificateChainFile)'")
        }
        switch PeerIdentity.parse(certificate: cert) {
        case .success(let identity):
            return identity
        case .failure(let error):
            throw TLSError(
                kind: .configuration,
                detail: "our own certificate '\(configuration.certificateChainFile)' is not a Strata certificate: \(error.detail ?? "")"
            )
        }
    }
}

/// Chain verification already done by OpenSSL (`preverify`); at the leaf we additionally require a
/// Strata identity, so a trusted certificate without a valid role or id fails the handshake with an alert.
/// Why it failed goes to the connection's `VerifyNote`, for the handler's error and the log.
private func strataVerifyCallback(_ preverify: Int32, _ store: OpaquePointer?) -> Int32 {
    guard preverify == 1, let store else { return preverify }
    guard let leaf = strata_X509_STORE_CTX_leaf(store) else { return 1 }
    if case .failure(let error) = PeerIdentity.parse(certificate: leaf) {
        if let ssl = strata_X509_STORE_CTX_get_ssl(store), let note = SSL_get_ex_data(ssl, TLSContext.verifyNoteIndex) {
            Unmanaged<VerifyNote>.fromOpaque(note).takeUnretainedValue().identityProblem = error.detail
        }
        X509_STORE_CTX_set_error(store, X509_V_ERR_APPLICATION_VERIFICATION)
        return 0
    }
    return 1
}

/// Per-connection scratch the verify callback writes into (owned by the `OpenSSLHandler`, referenced unretained
/// from the SSL's ex_data; only touched on the connection's event loop, inside `SSL_do_handshake`).
final class VerifyNote {
    var identityProblem: String?
}
