import COpenSSL
import CStrataOpenSSLShim

/// The role a certificate grants, encoded in the certificate's Subject OU.
public enum PeerRole: String, Sendable, Hashable, CaseIterable {
    /// Trains and sends updates (the agent port only).
    case agent
    /// Reads and steers the federation (the admin port).
    case admin
    /// Reads the admin API but may change nothing (the admin port; every changing route answers 403).
    case viewer
    case coordinator
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

/// The names Strata accepts as a certificate's CN: what `Certs/strata-pki.sh` issues (its `validate_id`),
/// 1-64 characters, the first from [A-Za-z0-9], the rest from [A-Za-z0-9._-]. The id becomes a database key,
/// a log field and a metrics label, so it is held to one unambiguous spelling.
public enum StrataName {
    public static let maxLength = 64

    /// Nil if `bytes` is a valid name, else why not.
    public static func problem(_ bytes: some Collection<UInt8>) -> String? {
        guard !bytes.isEmpty else { return "is empty" }
        guard bytes.count <= maxLength else { return "is \(bytes.count) bytes long (at most \(maxLength))" }
        for (index, byte) in bytes.enumerated() {
            let alphanumeric = (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
            let punctuation = byte == 0x2E || byte == 0x5F || byte == 0x2D  // . _ -
            if byte == 0 { return "contains a NUL byte" }
            if index == 0 && !alphanumeric { return "does not start with a letter or digit" }
            if !alphanumeric && !punctuation {
                return "contains byte 0x\(String(byte, radix: 16)) at offset \(index) (allowed: A-Z a-z 0-9 . _ -)"
            }
        }
        return nil
    }
}

extension PeerIdentity {
    /// Reads the Strata identity of an `X509*`. Fails with a message unless the subject has exactly one CN
    /// and exactly one OU, both UTF8String or PrintableString without NUL bytes, the OU naming a role and the
    /// CN a valid `StrataName`. The bytes are taken from the ASN.1 string itself (type and exact length), so
    /// no other encoding or a truncation can spell an existing id.
    static func parse(certificate cert: OpaquePointer) -> Result<PeerIdentity, TLSError> {
        guard let name = X509_get_subject_name(cert) else {
            return .failure(TLSError(kind: .peerIdentityInvalid, detail: "certificate has no subject"))
        }
        let subject = Self.oneLine(name: name).map { $0.count > 200 ? String($0.prefix(200)) + "…" : $0 } ?? "?"
        func invalid(_ text: String) -> Result<PeerIdentity, TLSError> {
            .failure(TLSError(kind: .peerIdentityInvalid, detail: "certificate subject '\(subject)' \(text)"))
        }
        func single(_ nid: Int32, _ label: String) -> Result<[UInt8], TLSError> {
            let first = X509_NAME_get_index_by_NID(name, nid, -1)
            guard first >= 0 else {
                return .failure(TLSError(kind: .peerIdentityInvalid, detail: "certificate subject '\(subject)' has no \(label)"))
            }
            guard X509_NAME_get_index_by_NID(name, nid, first) < 0 else {
                return .failure(TLSError(kind: .peerIdentityInvalid, detail: "certificate subject '\(subject)' has more than one \(label)"))
            }
            guard let entry = X509_NAME_get_entry(name, first), let data = X509_NAME_ENTRY_get_data(entry) else {
                return .failure(TLSError(kind: .peerIdentityInvalid, detail: "certificate subject '\(subject)' has an unreadable \(label)"))
            }
            let type = ASN1_STRING_type(data)
            guard type == V_ASN1_UTF8STRING || type == V_ASN1_PRINTABLESTRING else {
                return .failure(TLSError(kind: .peerIdentityInvalid, detail:
                    "certificate subject '\(subject)' has its \(label) encoded as \(Self.asn1TypeName(type)); Strata accepts only UTF8String or PrintableString"))
            }
            let length = Int(ASN1_STRING_length(data))
            guard length > 0, let bytes = ASN1_STRING_get0_data(data) else { return .success([]) }
            return .success(Array(UnsafeBufferPointer(start: bytes, count: length)))
        }
        let commonName: [UInt8]
        let unit: [UInt8]
        switch single(NID_commonName, "CN") {
        case .success(let value): commonName = value
        case .failure(let error): return .failure(error)
        }
        switch single(NID_organizationalUnitName, "OU (role)") {
        case .success(let value): unit = value
        case .failure(let error): return .failure(error)
        }
        if let problem = StrataName.problem(commonName) {
            return invalid("has a CN that \(problem); a Strata id is 1-\(StrataName.maxLength) characters from A-Z a-z 0-9 . _ -, starting with a letter or digit")
        }
        let roles = PeerRole.allCases.map(\.rawValue).joined(separator: ", ")
        guard !unit.contains(0), let role = PeerRole(rawValue: String(decoding: unit, as: UTF8.self)) else {
            return invalid("has an OU that is not a Strata role (\(roles))")
        }
        return .success(PeerIdentity(
            commonName: String(decoding: commonName, as: UTF8.self),
            role: role,
            subject: subject,
            serialNumber: Self.serialHex(cert) ?? "",
            fingerprintSHA256: Self.sha256Hex(cert) ?? "",
            notAfter: Self.notAfter(cert)
        ))
    }

    private static func asn1TypeName(_ type: Int32) -> String {
        switch type {
        case V_ASN1_BMPSTRING: "BMPString"
        case V_ASN1_UNIVERSALSTRING: "UniversalString"
        case V_ASN1_T61STRING: "TeletexString"
        case V_ASN1_IA5STRING: "IA5String"
        case V_ASN1_VISIBLESTRING: "VisibleString"
        default: "ASN.1 type \(type)"
        }
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
