import COpenSSL
import CStrataOpenSSLShim

/// A failure of Strata's TLS layer, with OpenSSL's own reasons and advice for the operator.
public struct TLSError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        /// A certificate, key or trust file could not be loaded, or they do not belong together.
        case configuration
        /// The TLS handshake failed (bad or untrusted certificate, wrong host name, protocol version, alert from the peer).
        case handshakeFailed
        /// The peer did not complete the handshake within `TLSConfiguration.handshakeTimeout`.
        case handshakeTimeout
        /// The peer presented no certificate.
        case peerCertificateMissing
        /// The peer's certificate is trusted but names no Strata role (Subject OU) or has no valid CN
        /// (see `PeerIdentity.parse` and `StrataName`).
        case peerIdentityInvalid
        /// The peer's certificate is on our certificate revocation list (`TLSConfiguration.revocationListFile`).
        case peerCertificateRevoked
        /// The peer refused our certificate: a TLS 1.3 client learns it from the alert on its first read
        /// after the handshake (unknown CA, revoked, expired, wrong purpose, invalid Strata identity).
        case certificateRefused
        /// The peer closed the connection without a TLS close_notify: the data received may be truncated.
        case uncleanShutdown
        /// The peer did not answer our close_notify within `TLSConfiguration.closeNotifyTimeout`.
        case closeNotifyTimeout
        /// Decrypting or authenticating received data failed, or the peer sent a fatal alert.
        case readFailed
        /// Encrypting outbound data failed.
        case writeFailed
        /// The handler was used in a way it does not support, or OpenSSL reported an unexpected state.
        case protocolError
    }

    public var kind: Kind
    /// OpenSSL's error strings (from the error queue, oldest first), plus the certificate verification
    /// result (X509_verify_cert_error_string) when verification failed.
    public var reasons: [String]
    /// What exactly failed, e.g. which file. Optional extra context.
    public var detail: String?

    public init(kind: Kind, reasons: [String] = [], detail: String? = nil) {
        self.kind = kind
        self.reasons = reasons
        self.detail = detail
    }

    /// Human text: what happened, OpenSSL's reasons, and what to do next.
    public var description: String {
        var text = "TLS error (\(self.kind.summary))"
        if let detail = self.detail, !detail.isEmpty {
            text += ": \(detail)"
        }
        if !self.reasons.isEmpty {
            text += ". OpenSSL: " + self.reasons.joined(separator: "; ")
        }
        text += ". " + self.kind.advice
        return text
    }
}

extension TLSError.Kind {
    /// A few words naming the failure.
    public var summary: String {
        switch self {
        case .configuration: return "configuration"
        case .handshakeFailed: return "handshake failed"
        case .handshakeTimeout: return "handshake timed out"
        case .peerCertificateMissing: return "peer presented no certificate"
        case .peerIdentityInvalid: return "peer certificate has no valid Strata identity"
        case .peerCertificateRevoked: return "peer certificate is revoked"
        case .certificateRefused: return "the peer refused our certificate"
        case .uncleanShutdown: return "connection closed without TLS close_notify"
        case .closeNotifyTimeout: return "peer did not answer close_notify in time"
        case .readFailed: return "read failed"
        case .writeFailed: return "write failed"
        case .protocolError: return "protocol error"
        }
    }

    /// What an operator should do next.
    public var advice: String {
        switch self {
        case .configuration:
            return "Check that the file exists, is readable by this process and is PEM, that the private key "
                + "belongs to the certificate, and that the trust file is the federation CA (ca.crt); "
                + "re-issue with Certs/strata-pki.sh if needed."
        case .handshakeFailed:
            return "Check that both sides hold certificates from the same federation CA, that neither has "
                + "expired (openssl x509 -noout -enddate -in FILE), that the peer speaks TLS 1.3, and that "
                + "the coordinator certificate's SAN contains the host name or address the agent dials."
        case .handshakeTimeout:
            return "Check that the peer is a Strata TLS endpoint (not plain TCP) and is reachable and not "
                + "overloaded; the connection was closed, retry with backoff."
        case .peerCertificateMissing:
            return "Every Strata participant must be configured with a certificate and key issued by the "
                + "federation CA (Certs/strata-pki.sh agent|admin ID)."
        case .peerIdentityInvalid:
            return "The certificate must have exactly one Subject OU naming a role (agent, admin, viewer, coordinator) and "
                + "exactly one CN of 1-64 characters from A-Z a-z 0-9 . _ - (starting with a letter or digit), both "
                + "UTF8String or PrintableString; re-issue it with Certs/strata-pki.sh."
        case .peerCertificateRevoked:
            return "The federation operator revoked this certificate (the CRL given with --crl lists its serial). The "
                + "participant needs a new certificate (Certs/strata-pki.sh --force agent|admin|viewer ID) before it can connect again."
        case .certificateRefused:
            return "Check that this certificate was issued by the federation CA the peer trusts (openssl verify -CAfile ca.crt "
                + "-purpose sslclient CERT), has not expired (openssl x509 -noout -enddate -in CERT), was not revoked, and "
                + "has the right role (Subject OU) for the port; ask the federation operator for a new one "
                + "(Certs/strata-pki.sh agent|admin|viewer ID) if needed."
        case .uncleanShutdown:
            return "The last message from the peer may be incomplete: discard it and reconnect. If this "
                + "recurs, check for a proxy or firewall cutting connections, or a crashing peer."
        case .closeNotifyTimeout:
            return "The connection was closed anyway; nothing to do unless it recurs (then check the peer's health)."
        case .readFailed:
            return "Received data could not be decrypted or the peer sent a fatal alert (see the reasons); "
                + "the connection was closed, reconnect. Repeated failures suggest a corrupting network path."
        case .writeFailed:
            return "The connection was closed; reconnect. Report it if it recurs."
        case .protocolError:
            return "This is a bug or a misuse of the TLS handler; report it with the reasons above."
        }
    }
}

/// One entry of OpenSSL's thread-local error queue.
struct OpenSSLErrorEntry {
    var code: UInt
    var text: String

    var reasonCode: Int32 { ERR_GET_REASON(self.code) }

    /// The TLS alert this entry reports having received (reason codes SSL_AD_REASON_OFFSET + alert), or nil.
    var receivedAlert: TLSAlert? {
        let reason = self.reasonCode - 1000  // SSL_AD_REASON_OFFSET
        guard ERR_GET_LIB(self.code) == ERR_LIB_SSL, (0..<256).contains(reason) else { return nil }
        return TLSAlert(code: UInt8(reason))
    }
}

enum OpenSSLErrorQueue {
    /// Removes every entry from the calling thread's OpenSSL error queue, oldest first.
    static func drain() -> [OpenSSLErrorEntry] {
        var entries: [OpenSSLErrorEntry] = []
        while true {
            var data: UnsafePointer<CChar>? = nil
            var flags: Int32 = 0
            let code = ERR_get_error_all(nil, nil, nil, &data, &flags)
            if code == 0 { break }
            var text = withUnsafeTemporaryAllocation(of: CChar.self, capacity: 256) { buffer -> String in
                ERR_error_string_n(code, buffer.baseAddress, buffer.count)
                return String(cString: buffer.baseAddress!)
            }
            if let data, (flags & ERR_TXT_STRING) != 0 {
                let extra = String(cString: data)
                if !extra.isEmpty { text += " (\(extra))" }
            }
            entries.append(OpenSSLErrorEntry(code: code, text: text))
            if entries.count > 32 {  // never loop forever on a misbehaving queue
                ERR_clear_error()
                break
            }
        }
        return entries
    }

    static func drainStrings() -> [String] { drain().map(\.text) }

    /// Text of a certificate verification result, e.g. "certificate has expired".
    static func verifyResultText(_ result: Int) -> String {
        if let text = X509_verify_cert_error_string(result) {
            return String(cString: text)
        }
        return "verification error \(result)"
    }
}

extension TLSError.Kind {
    /// A stable, lowercase label for metrics (e.g. `strata_tls_handshake_failures_total{reason="no-certificate"}`).
    public var label: String {
        switch self {
        case .configuration: "configuration"
        case .handshakeFailed: "handshake-failed"
        case .handshakeTimeout: "handshake-timeout"
        case .peerCertificateMissing: "no-certificate"
        case .peerIdentityInvalid: "invalid-identity"
        case .peerCertificateRevoked: "revoked"
        case .certificateRefused: "certificate-refused"
        case .uncleanShutdown: "unclean-shutdown"
        case .closeNotifyTimeout: "close-notify-timeout"
        case .readFailed: "read-failed"
        case .writeFailed: "write-failed"
        case .protocolError: "protocol-error"
        }
    }
}

/// A TLS alert description (RFC 8446 §6), as received from a peer.
public struct TLSAlert: Sendable, Hashable, CustomStringConvertible {
    public var code: UInt8

    public var description: String {
        switch code {
        case 40: "handshake_failure"
        case 42: "bad_certificate"
        case 43: "unsupported_certificate"
        case 44: "certificate_revoked"
        case 45: "certificate_expired"
        case 46: "certificate_unknown"
        case 48: "unknown_ca"
        case 49: "access_denied"
        case 116: "certificate_required"
        default: "alert \(code)"
        }
    }

    /// What the peer most likely objected to in our certificate when it sent this alert.
    public var likelyCause: String {
        switch code {
        case 44: "our certificate has been revoked by the federation operator (it is on the coordinator's CRL)"
        case 45: "our certificate has expired (or the peer's clock is wrong)"
        case 48: "our certificate was not issued by the CA the peer trusts (another federation's CA, or the peer has the wrong --ca)"
        case 43: "our certificate has the wrong purpose (no clientAuth extended key usage)"
        case 40: "our certificate's Strata identity is invalid (Subject OU not a Strata role, or a CN outside A-Z a-z 0-9 . _ -)"
        case 116: "we sent no certificate"
        default: "our certificate is not acceptable to the peer (not issued by its CA, expired, revoked, or a wrong role)"
        }
    }
}
