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
        /// The peer's certificate is trusted but names no Strata role (Subject OU) or has no CN.
        case peerIdentityInvalid
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
            return "The certificate must have Subject OU = agent, admin or coordinator and a CN; "
                + "re-issue it with Certs/strata-pki.sh."
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
        case .uncleanShutdown: "unclean-shutdown"
        case .closeNotifyTimeout: "close-notify-timeout"
        case .readFailed: "read-failed"
        case .writeFailed: "write-failed"
        case .protocolError: "protocol-error"
        }
    }
}
