import Foundation
import StrataTransport

/// Certificates for the tests, made once per test process in a temporary directory by
/// `Certs/strata-pki.sh` (good federation and a second, unrelated CA) and by the openssl CLI
/// (expired certificate, certificate without a Strata role). Removed at process exit.
struct PKIFixture: Sendable {
    let root: URL

    var dir: String { root.appendingPathComponent("pki").path }
    var otherDir: String { root.appendingPathComponent("other").path }
    var caFile: String { dir + "/ca.crt" }

    func coordinator() -> TLSConfiguration {
        TLSConfiguration(certificateChainFile: dir + "/coordinator.crt", privateKeyFile: dir + "/coordinator.key", trustRootsFile: caFile)
    }
    func agent(_ id: String = "agent-01") -> TLSConfiguration {
        TLSConfiguration(certificateChainFile: dir + "/agents/\(id).crt", privateKeyFile: dir + "/agents/\(id).key", trustRootsFile: caFile)
    }
    func admin() -> TLSConfiguration {
        TLSConfiguration(certificateChainFile: dir + "/admins/operator.crt", privateKeyFile: dir + "/admins/operator.key", trustRootsFile: caFile)
    }
    /// CRL of the good CA listing agent "revoked-01"; the same CA's CRL before that; another CA's CRL.
    var revokingCRL: String { dir + "/crl.pem" }
    var emptyCRL: String { root.path + "/crl-empty.pem" }
    var otherCACRL: String { otherDir + "/crl.pem" }

    func viewer() -> TLSConfiguration {
        TLSConfiguration(certificateChainFile: dir + "/viewers/auditor.crt", privateKeyFile: dir + "/viewers/auditor.key", trustRootsFile: caFile)
    }
    /// Agent certificate from another CA; trusts the good CA (so only the server can object).
    func otherCAAgent() -> TLSConfiguration {
        TLSConfiguration(certificateChainFile: otherDir + "/agents/intruder.crt", privateKeyFile: otherDir + "/agents/intruder.key", trustRootsFile: caFile)
    }
    /// Agent certificate signed by the good CA, valid 2020-01-01 .. 2021-01-01.
    func expiredAgent() -> TLSConfiguration {
        TLSConfiguration(certificateChainFile: root.path + "/bad/expired.crt", privateKeyFile: root.path + "/bad/expired.key", trustRootsFile: caFile)
    }
    /// Certificate signed by the good CA with OU=visitor (not a Strata role).
    var noRoleCertificate: (cert: String, key: String) {
        (root.path + "/bad/visitor.crt", root.path + "/bad/visitor.key")
    }

    /// Certificates signed by the good CA whose CN is meant to alias another id (see `makeAliasingCertificates`).
    enum Aliasing: String, CaseIterable, Sendable {
        /// A BMPString CN whose raw bytes are "agent-02".
        case bmpString = "bmp"
        /// Two 300-byte CNs that differ only after byte 256 (a fixed buffer would make them one id).
        case long1, long2
        /// A UTF8String CN "agent-02\0evil".
        case nulByte = "nul"
        /// A PrintableString CN with a character outside the pki script's alphabet ("agent 02").
        case space
    }
    func aliasing(_ which: Aliasing) -> (cert: String, key: String) {
        (root.path + "/alias/\(which.rawValue).crt", root.path + "/alias/\(which.rawValue).key")
    }

    static let repoRoot: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent()  // Support
        .deletingLastPathComponent()  // StrataTransportTests
        .deletingLastPathComponent()  // Tests
        .deletingLastPathComponent()  // repo

    static var script: String { repoRoot.appendingPathComponent("Certs/strata-pki.sh").path }

    private static let made: Result<PKIFixture, Error> = Result { try PKIFixture.make() }

    static func get() throws -> PKIFixture { try made.get() }

    private static func make() throws -> PKIFixture {
        let root = try makeTemporaryDirectory(prefix: "strata-tls-tests")
        registerCleanup(root.path)
        let fixture = PKIFixture(root: root)
        try run(script, ["--dir", fixture.dir, "dev", "--agents", "2"])
        try run(script, ["--dir", fixture.dir, "viewer", "auditor"])
        // Revocation: an empty CRL kept aside, then one that revokes agent "revoked-01"; and another CA's CRL.
        try run(script, ["--dir", fixture.dir, "agent", "revoked-01"])
        try run(script, ["--dir", fixture.dir, "crl"])
        try FileManager.default.copyItem(atPath: fixture.dir + "/crl.pem", toPath: fixture.emptyCRL)
        try run(script, ["--dir", fixture.dir, "revoke", "revoked-01"])
        try run(script, ["--dir", fixture.otherDir, "ca"])
        try run(script, ["--dir", fixture.otherDir, "agent", "intruder"])
        try run(script, ["--dir", fixture.otherDir, "crl"])
        try makeBadCertificates(root: root, dir: fixture.dir)
        try makeAliasingCertificates(root: root, dir: fixture.dir)
        return fixture
    }

    private static func makeBadCertificates(root: URL, dir: String) throws {
        let bad = root.appendingPathComponent("bad").path
        try FileManager.default.createDirectory(atPath: bad + "/newcerts", withIntermediateDirectories: true)
        try Data().write(to: URL(fileURLWithPath: bad + "/index.txt"))
        try Data("1000\n".utf8).write(to: URL(fileURLWithPath: bad + "/serial"))
        let config = """
            [ca]
            default_ca = test_ca
            [test_ca]
            database = \(bad)/index.txt
            new_certs_dir = \(bad)/newcerts
            certificate = \(dir)/ca.crt
            private_key = \(dir)/ca.key
            serial = \(bad)/serial
            default_md = sha256
            policy = any_policy
            unique_subject = no
            email_in_dn = no
            x509_extensions = client_ext
            [any_policy]
            organizationName = optional
            organizationalUnitName = optional
            commonName = supplied
            [client_ext]
            basicConstraints = critical, CA:FALSE
            keyUsage = critical, digitalSignature
            extendedKeyUsage = clientAuth
            subjectKeyIdentifier = hash
            authorityKeyIdentifier = keyid, issuer

            """
        try Data(config.utf8).write(to: URL(fileURLWithPath: bad + "/ca.cnf"))
        for (name, subject) in [("expired", "/O=Strata/OU=agent/CN=agent-expired"), ("visitor", "/O=Strata/OU=visitor/CN=visitor-01")] {
            try run("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "\(bad)/\(name).key"])
            try run("openssl", ["req", "-new", "-key", "\(bad)/\(name).key", "-subj", subject, "-out", "\(bad)/\(name).csr"])
            var dates = ["-days", "30"]
            if name == "expired" {
                dates = ["-startdate", "20200101000000Z", "-enddate", "20210101000000Z"]
            }
            try run("openssl", ["ca", "-batch", "-notext", "-config", "\(bad)/ca.cnf", "-in", "\(bad)/\(name).csr", "-out", "\(bad)/\(name).crt"] + dates)
        }
    }
}

extension PKIFixture {
    /// CNs that a byte-buffer reading of the subject would take for (or merge into) another id. The openssl CLI
    /// makes the BMPString one (`string_mask = MASK:0x802` lets PrintableString for O/OU and BMPString for the
    /// CN) and the 300-byte ones (a `stbl` string-table section lifts the 64-character limit on commonName);
    /// no CLI option can put a NUL byte into a name, so that one is re-signed through libcrypto
    /// (`CertificateForge`).
    fileprivate static func makeAliasingCertificates(root: URL, dir: String) throws {
        let alias = root.appendingPathComponent("alias").path
        try FileManager.default.createDirectory(atPath: alias, withIntermediateDirectories: true)
        let configs = [
            "bmp.cnf": "[req]\ndistinguished_name = dn\nstring_mask = MASK:0x802\nutf8 = yes\n[dn]\n",
            "long.cnf": "openssl_conf = init\n[init]\nstbl = stbl_sect\n[stbl_sect]\ncommonName = min:1,max:1024\n[req]\ndistinguished_name = dn\n[dn]\n",
            "plain.cnf": "[req]\ndistinguished_name = dn\nstring_mask = default\n[dn]\n",
            "ext.cnf": "basicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = clientAuth\n",
        ]
        for (name, text) in configs { try Data(text.utf8).write(to: URL(fileURLWithPath: "\(alias)/\(name)")) }
        // UCS-2 code units 0x6167 0x656E 0x742D 0x3032: as a BMPString their bytes are "agent-02".
        let bmpSpelling = stride(from: 0, to: 8, by: 2).map { i -> String in
            let bytes = Array("agent-02".utf8)
            return String(UnicodeScalar(UInt32(bytes[i]) << 8 | UInt32(bytes[i + 1]))!)
        }.joined()
        let subjects: [(Aliasing, String, String)] = [
            (.bmpString, "bmp.cnf", "/O=Strata/OU=agent/CN=\(bmpSpelling)"),
            (.long1, "long.cnf", "/O=Strata/OU=agent/CN=" + String(repeating: "a", count: 299) + "1"),
            (.long2, "long.cnf", "/O=Strata/OU=agent/CN=" + String(repeating: "a", count: 299) + "2"),
            (.nulByte, "plain.cnf", "/O=Strata/OU=agent/CN=agent-02-placeholder"),
            (.space, "plain.cnf", "/O=Strata/OU=agent/CN=agent 02"),
        ]
        for (which, config, subject) in subjects {
            let base = "\(alias)/\(which.rawValue)"
            try run("openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", "\(base).key"])
            try run("openssl", ["req", "-new", "-config", "\(alias)/\(config)", "-utf8", "-key", "\(base).key", "-subj", subject, "-out", "\(base).csr"])
            try run("openssl", ["x509", "-req", "-in", "\(base).csr", "-CA", "\(dir)/ca.crt", "-CAkey", "\(dir)/ca.key", "-days", "30",
                                "-set_serial", "0x\(String(UInt32.random(in: 1...UInt32.max), radix: 16))", "-extfile", "\(alias)/ext.cnf", "-out", "\(base).crt"])
        }
        try CertificateForge.replaceCommonName(
            certificate: "\(alias)/nul.crt", utf8Bytes: Array("agent-02".utf8) + [0] + Array("evil".utf8),
            caKey: "\(dir)/ca.key")
    }
}

struct ProcessFailure: Error, CustomStringConvertible {
    var command: String
    var status: Int32
    var output: String
    var description: String { "\(command) exited with \(status): \(output)" }
}

/// Runs a command to completion (for quick setup commands), throwing with its output on failure.
@discardableResult
func run(_ executable: String, _ arguments: [String]) throws -> String {
    let process = Process()
    if executable.contains("/") {
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
    } else {
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [executable] + arguments
    }
    let outputURL = FileManager.default.temporaryDirectory.appendingPathComponent("strata-run-\(UUID().uuidString).log")
    _ = FileManager.default.createFile(atPath: outputURL.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: outputURL) }
    let handle = try FileHandle(forWritingTo: outputURL)
    process.standardOutput = handle
    process.standardError = handle
    process.standardInput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    try? handle.close()
    let output = (try? String(contentsOf: outputURL, encoding: .utf8)) ?? ""
    guard process.terminationStatus == 0 else {
        throw ProcessFailure(command: ([executable] + arguments).joined(separator: " "), status: process.terminationStatus, output: output)
    }
    return output
}

func makeTemporaryDirectory(prefix: String) throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("\(prefix)-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

private let cleanupPaths = CleanupList()

private final class CleanupList: @unchecked Sendable {
    private let lock = NSLock()
    private var paths: [String] = []
    private var registered = false

    func add(_ path: String) {
        lock.lock()
        defer { lock.unlock() }
        paths.append(path)
        if !registered {
            registered = true
            atexit { cleanupPaths.removeAll() }
        }
    }

    func removeAll() {
        lock.lock()
        let all = paths
        paths = []
        lock.unlock()
        for path in all { try? FileManager.default.removeItem(atPath: path) }
    }
}

/// Removes `path` when the test process exits.
func registerCleanup(_ path: String) { cleanupPaths.add(path) }
