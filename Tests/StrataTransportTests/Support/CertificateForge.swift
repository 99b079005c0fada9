import COpenSSL

/// Rewrites a certificate's subject with a CN of raw bytes and signs it again with the CA's key: a certificate
/// the CA "issued" that no openssl command line can spell (a NUL byte inside a UTF8String CN).
enum CertificateForge {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    static func replaceCommonName(certificate path: String, utf8Bytes: [UInt8], caKey: String) throws {
        guard let certificate = readPEM(path, PEM_read_bio_X509) else { throw Failure(description: "cannot read \(path)") }
        defer { X509_free(certificate) }
        guard let key = readPEM(caKey, PEM_read_bio_PrivateKey) else { throw Failure(description: "cannot read \(caKey)") }
        defer { EVP_PKEY_free(key) }
        guard let name = X509_NAME_new() else { throw Failure(description: "X509_NAME_new failed") }
        defer { X509_NAME_free(name) }
        // O and OU as text; the CN with an explicit ASN.1 type, which takes the bytes as they are (no length table).
        var ok = X509_NAME_add_entry_by_NID(name, NID_organizationName, MBSTRING_ASC, "Strata", -1, -1, 0) == 1
            && X509_NAME_add_entry_by_NID(name, NID_organizationalUnitName, MBSTRING_ASC, "agent", -1, -1, 0) == 1
        ok = ok && utf8Bytes.withUnsafeBufferPointer {
            X509_NAME_add_entry_by_NID(name, NID_commonName, V_ASN1_UTF8STRING, $0.baseAddress, Int32($0.count), -1, 0) == 1
        }
        guard ok, X509_set_subject_name(certificate, name) == 1, X509_sign(certificate, key, EVP_sha256()) > 0 else {
            throw Failure(description: "cannot re-sign \(path)")
        }
        guard let out = BIO_new_file(path, "w") else { throw Failure(description: "cannot write \(path)") }
        defer { BIO_free(out) }
        guard PEM_write_bio_X509(out, certificate) == 1 else { throw Failure(description: "cannot write \(path)") }
    }

    private static func readPEM(_ path: String,
                                _ read: (OpaquePointer?, UnsafeMutablePointer<OpaquePointer?>?, (@convention(c) (UnsafeMutablePointer<CChar>?, Int32, Int32, UnsafeMutableRawPointer?) -> Int32)?, UnsafeMutableRawPointer?) -> OpaquePointer?) -> OpaquePointer? {
        guard let bio = BIO_new_file(path, "r") else { return nil }
        defer { BIO_free(bio) }
        return read(bio, nil, nil, nil)
    }
}
