import COpenSSL
import CStrataOpenSSLShim

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// What was loaded from a CRL file, for logs and status.
public struct RevocationListInfo: Sendable, Hashable {
    public var path: String
    /// Certificates listed as revoked (over every CRL in the file).
    public var revokedCount: Int
    /// The CRL's thisUpdate and nextUpdate, ISO 8601 UTC (the earliest nextUpdate if the file holds several).
    public var lastUpdate: String
    public var nextUpdate: String?
    /// Seconds until nextUpdate when it was loaded (nil: none); after it every handshake fails until a new CRL.
    public var secondsUntilNextUpdate: Int?
    /// Identifies the file version that was loaded (see `FileSignature`).
    public var signature: FileSignature
}

/// Inode, size and modification time (ns) of a file: a change of any means the file was replaced or rewritten.
public struct FileSignature: Sendable, Hashable {
    public var inode: UInt64
    public var size: Int64
    public var modifiedNanos: Int64

    /// The signature of `path` now, or nil if it cannot be read.
    public static func of(_ path: String) -> FileSignature? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        #if canImport(Darwin)
        let nanos = Int64(info.st_mtimespec.tv_sec) * 1_000_000_000 + Int64(info.st_mtimespec.tv_nsec)
        #else
        let nanos = Int64(info.st_mtim.tv_sec) * 1_000_000_000 + Int64(info.st_mtim.tv_nsec)
        #endif
        return FileSignature(inode: UInt64(info.st_ino), size: Int64(info.st_size), modifiedNanos: nanos)
    }
}

/// An `X509_STORE` holding the federation CA and its CRL(s), with leaf CRL checking on. Built whole and never
/// modified afterwards, so connections can share it across threads.
final class VerifyStore: @unchecked Sendable {
    let store: OpaquePointer
    let info: RevocationListInfo

    init(caFile: String, crlFile: String) throws {
        guard let signature = FileSignature.of(crlFile) else {
            throw TLSError(kind: .configuration, detail: "cannot read the revocation list '\(crlFile)': \(String(cString: strerror(errno))). "
                + "Create one with Certs/strata-pki.sh --dir PKI_DIR crl")
        }
        ERR_clear_error()
        let crls = try Self.readCRLs(crlFile)
        defer { crls.forEach { X509_CRL_free($0) } }
        let cas = try Self.readCertificates(caFile)
        defer { cas.forEach { X509_free($0) } }

        var revoked = 0
        var lastUpdate: String = ""
        var earliestNext: (text: String, seconds: Int)? = nil
        for crl in crls {
            // Signed by one of the trusted CAs: a CRL from another CA would make OpenSSL refuse every peer.
            let issuer = X509_CRL_get_issuer(crl)
            guard let ca = cas.first(where: { X509_NAME_cmp(X509_get_subject_name($0), issuer) == 0 }),
                  let key = X509_get0_pubkey(ca), X509_CRL_verify(crl, key) == 1 else {
                ERR_clear_error()
                throw TLSError(kind: .configuration, detail: "the revocation list '\(crlFile)' is not signed by the CA in '\(caFile)'; "
                    + "regenerate it with the federation's CA: Certs/strata-pki.sh --dir PKI_DIR crl")
            }
            if let this = X509_CRL_get0_lastUpdate(crl) {
                guard X509_cmp_current_time(this) <= 0 else {
                    throw TLSError(kind: .configuration, detail: "the revocation list '\(crlFile)' is not valid yet (thisUpdate \(Self.iso(this) ?? "?")); check the clock")
                }
                lastUpdate = Self.iso(this) ?? ""
            }
            if let next = X509_CRL_get0_nextUpdate(crl) {
                guard X509_cmp_current_time(next) > 0 else {
                    throw TLSError(kind: .configuration, detail: "the revocation list '\(crlFile)' expired at \(Self.iso(next) ?? "?") (nextUpdate); "
                        + "every handshake would fail. Regenerate it: Certs/strata-pki.sh --dir PKI_DIR crl")
                }
                var days: Int32 = 0, seconds: Int32 = 0
                let left = ASN1_TIME_diff(&days, &seconds, nil, next) == 1 ? Int(days) * 86_400 + Int(seconds) : 0
                if earliestNext == nil || left < earliestNext!.seconds { earliestNext = (Self.iso(next) ?? "?", left) }
            }
            if let entries = X509_CRL_get_REVOKED(crl) {
                revoked += Int(OPENSSL_sk_num(entries))
            }
        }

        guard let store = X509_STORE_new() else {
            throw TLSError(kind: .configuration, reasons: OpenSSLErrorQueue.drainStrings(), detail: "X509_STORE_new failed")
        }
        var ok = X509_STORE_set_flags(store, strata_X509_V_FLAG_CRL_CHECK()) == 1
        for ca in cas where ok { ok = X509_STORE_add_cert(store, ca) == 1 }
        for crl in crls where ok { ok = X509_STORE_add_crl(store, crl) == 1 }
        guard ok else {
            let reasons = OpenSSLErrorQueue.drainStrings()
            X509_STORE_free(store)
            throw TLSError(kind: .configuration, reasons: reasons, detail: "cannot build the certificate store from '\(caFile)' and '\(crlFile)'")
        }
        self.store = store
        self.info = RevocationListInfo(path: crlFile, revokedCount: revoked, lastUpdate: lastUpdate, nextUpdate: earliestNext?.text,
                                       secondsUntilNextUpdate: earliestNext?.seconds, signature: signature)
    }

    deinit {
        X509_STORE_free(self.store)
    }

    private static func readCRLs(_ path: String) throws -> [OpaquePointer] {
        guard let bio = BIO_new_file(path, "r") else {
            throw TLSError(kind: .configuration, reasons: OpenSSLErrorQueue.drainStrings(), detail: "cannot open the revocation list '\(path)'")
        }
        defer { BIO_free(bio) }
        var crls: [OpaquePointer] = []
        while let crl = PEM_read_bio_X509_CRL(bio, nil, nil, nil) { crls.append(crl) }
        ERR_clear_error()  // the end of the file is reported as an error
        guard !crls.isEmpty else {
            throw TLSError(kind: .configuration, detail: "'\(path)' holds no PEM certificate revocation list (expected -----BEGIN X509 CRL-----); "
                + "create one with Certs/strata-pki.sh --dir PKI_DIR crl")
        }
        return crls
    }

    private static func readCertificates(_ path: String) throws -> [OpaquePointer] {
        guard let bio = BIO_new_file(path, "r") else {
            throw TLSError(kind: .configuration, reasons: OpenSSLErrorQueue.drainStrings(), detail: "cannot open the trust roots file '\(path)'")
        }
        defer { BIO_free(bio) }
        var certificates: [OpaquePointer] = []
        while let certificate = PEM_read_bio_X509(bio, nil, nil, nil) { certificates.append(certificate) }
        ERR_clear_error()
        guard !certificates.isEmpty else {
            throw TLSError(kind: .configuration, detail: "'\(path)' holds no PEM CA certificate")
        }
        return certificates
    }

    private static func iso(_ time: UnsafePointer<ASN1_TIME>) -> String? {
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
