import COpenSSL
import CStrataOpenSSLShim

/// The role a certificate grants, encoded in the certificate's Subject OU.
public enum PeerRole: String, Sendable, Hashable, CaseIterable {
    case agent, admin, coordinator
}

/// Who the peer of an authenticated TLS connection is, taken from its verified certificate.
public struct PeerIdentity: Sendable, Hashable {
    /// The participant's id (Subject CN), e.g. the agent id.
    public var commonName: String
    /// The role (Subject OU).
    public var role: PeerRole
    /// The whole subject on one line (RFC 2253 order), e.g. "CN=agent-01,OU=agent,O=Strata".
    public var subject: String
    /// Certificate serial number, lowercase hex.
    public var serialNumber: String
    /// SHA-256 of the certificate's DER encoding, lowercase hex without separators.
    public var fingerprintSHA256: String
    /// End of validity, ISO 8601 UTC (e.g. "2029-03-01T06:20:12Z").
    public var notAfter: String?

    public init(
        commonName: String,
        role: PeerRole,
        subject: String,
        serialNumber: String,
        fingerprintSHA256: String,
        notAfter: String? = nil
    ) {
        self.commonName = commonName
        self.role = role
        self.subject = subject
        self.serialNumber = serialNumber
        self.fingerprintSHA256 = fingerprintSHA256
        self.notAfter = notAfter
    }
}

/// Fired inbound right after a successful handshake, before `TLSUserEvent.handshakeCompleted`.
public struct TLSPeerAuthenticated: Sendable, Hashable {
    public var identity: PeerIdentity
    public init(identity: PeerIdentity) { self.identity = identity }
}

extension PeerIdentity {
    /// Reads the Strata identity of an `X509*`. Fails with a message when the subject has not exactly
    /// one CN and exactly one OU naming a known role.
    static func parse(certificate cert: OpaquePointer) -> Result<PeerIdentity, TLSError> {
        guard let name = X509_get_subject_name(cert) else {
            return .failure(TLSError(kind: .peerIdentityInvalid, detail: "certificate has no subject"))
        }
        let subject = Self.oneLine(name: name) ?? "?"
        func single(_ nid: Int32, _ label: String) -> Result<String, TLSError> {
            let first = X509_NAME_get_index_by_NID(name, nid, -1)
            guard first >= 0 else {
                return .failure(TLSError(kind: .peerIdentityInvalid, detail: "certificate subject '\(subject)' has no \(label)"))
            }
            guard X509_NAME_get_index_by_NID(name, nid, first) < 0 else {
                return .failure(TLSError(kind: .peerIdentityInvalid, detail: "certificate subject '\(subject)' has more than one \(label)"))
            }
            let text = withUnsafeTemporaryAllocation(of: CChar.self, capacity: 257) { buffer -> String? in
                let length = X509_NAME_get_text_by_NID(name, nid, buffer.baseAddress, Int32(buffer.count))
                guard length > 0 else { return nil }
                return String(decoding: UnsafeRawBufferPointer(start: buffer.baseAddress, count: Int(length)), as: UTF8.self)
            }
            guard let text, !text.isEmpty else {
                return .failure(TLSError(kind: .peerIdentityInvalid, detail: "certificate subject '\(subject)' has an empty \(label)"))
            }
            return .success(text)
        }
        let commonName: String
        let unit: String
        switch single(NID_commonName, "CN") {
        case .success(let value): commonName = value
        case .failure(let error): return .failure(error)
        }
        switch single(NID_organizationalUnitName, "OU (role)") {
        case .success(let value): unit = value
        case .failure(let error): return .failure(error)
        }
        guard let role = PeerRole(rawValue: unit) else {
            return .failure(TLSError(
                kind: .peerIdentityInvalid,
                detail: "certificate subject '\(subject)' has OU '\(unit)', which is not a Strata role (agent, admin, coordinator)"
            ))
        }
        return .success(PeerIdentity(
            commonName: commonName,
            role: role,
            subject: subject,
            serialNumber: Self.serialHex(cert) ?? "",
            fingerprintSHA256: Self.sha256Hex(cert) ?? "",
            notAfter: Self.notAfter(cert)
        ))
    }

    private static func oneLine(name: OpaquePointer) -> String? {
        guard let bio = BIO_new(BIO_s_mem()) else { return nil }
        defer { BIO_free(bio) }
        guard X509_NAME_print_ex(bio, name, 0, strata_XN_FLAG_RFC2253()) >= 0 else { return nil }
        let count = BIO_ctrl_pending(bio)
        return String(unsafeUninitializedCapacity: max(count, 1)) { buffer in
            Int(max(0, BIO_read(bio, buffer.baseAddress, Int32(count))))
        }
    }

    private static func serialHex(_ cert: OpaquePointer) -> String? {
        guard let serial = X509_get_serialNumber(cert), let bn = ASN1_INTEGER_to_BN(serial, nil) else { return nil }
        defer { BN_free(bn) }
        guard let hex = BN_bn2hex(bn) else { return nil }
        defer { strata_OPENSSL_free(hex) }
        return String(cString: hex).lowercased()
    }

    private static func sha256Hex(_ cert: OpaquePointer) -> String? {
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        guard X509_digest(cert, EVP_sha256(), &digest, &length) == 1 else { return nil }
        let hexDigits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(Int(length) * 2)
        for byte in digest.prefix(Int(length)) {
            out.append(hexDigits[Int(byte >> 4)])
            out.append(hexDigits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    private static func notAfter(_ cert: OpaquePointer) -> String? {
        guard let time = X509_get0_notAfter(cert) else { return nil }
        var tm = tm()
        guard ASN1_TIME_to_tm(time, &tm) == 1 else { return nil }
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(tm.tm_year + 1900, 4))-\(pad(tm.tm_mon + 1, 2))-\(pad(tm.tm_mday, 2))T"
            + "\(pad(tm.tm_hour, 2)):\(pad(tm.tm_min, 2)):\(pad(tm.tm_sec, 2))Z"
    }
}
