import Foundation
import Testing

@testable import StrataTransport

@Suite("TLSContext configuration and the PKI script")
struct ConfigurationAndPKITests {
    @Test("TLSContext loads a valid configuration and knows its own identity")
    func validContext() throws {
        let pki = try PKIFixture.get()
        let server = try TLSContext(configuration: pki.coordinator(), mode: .server)
        #expect(server.localIdentity.role == .coordinator)
        let client = try TLSContext(configuration: pki.agent("agent-02"), mode: .client)
        #expect(client.localIdentity.commonName == "agent-02")
        #expect(client.configuration.handshakeTimeout == .seconds(10))
        #expect(client.configuration.closeNotifyTimeout == .seconds(3))
    }

    @Test("a missing file is a configuration error naming the file")
    func missingFile() throws {
        let pki = try PKIFixture.get()
        var configuration = pki.agent()
        configuration.privateKeyFile = pki.dir + "/agents/nobody.key"
        let error = #expect(throws: TLSError.self) { try TLSContext(configuration: configuration, mode: .client) }
        #expect(error?.kind == .configuration)
        #expect(error?.description.contains("nobody.key") == true)
    }

    @Test("a key that does not belong to the certificate is refused with OpenSSL's reason")
    func mismatchedKey() throws {
        let pki = try PKIFixture.get()
        var configuration = pki.agent("agent-01")
        configuration.privateKeyFile = pki.dir + "/agents/agent-02.key"
        let error = #expect(throws: TLSError.self) { try TLSContext(configuration: configuration, mode: .client) }
        #expect(error?.kind == .configuration)
        #expect(error?.reasons.isEmpty == false)
        #expect(error?.description.contains("agent-02.key") == true)
        #expect(error?.reasons.contains { $0.contains("key values mismatch") } == true, "\(error?.reasons ?? [])")
    }

    @Test("a trust file that is not PEM is refused")
    func badTrustFile() throws {
        let pki = try PKIFixture.get()
        var configuration = pki.agent()
        configuration.trustRootsFile = pki.dir + "/agents/agent-01.key.not-there"
        #expect(throws: TLSError.self) { try TLSContext(configuration: configuration, mode: .client) }
        let garbage = pki.root.appendingPathComponent("garbage.pem")
        try Data("not a certificate\n".utf8).write(to: garbage)
        configuration.trustRootsFile = garbage.path
        let error = #expect(throws: TLSError.self) { try TLSContext(configuration: configuration, mode: .client) }
        #expect(error?.kind == .configuration)
    }

    @Test("serverHostname is refused for a server-mode handler")
    func serverHostnameOnServer() throws {
        let pki = try PKIFixture.get()
        let context = try TLSContext(configuration: pki.coordinator(), mode: .server)
        #expect(throws: TLSError.self) { _ = try OpenSSLHandler(context: context, serverHostname: "localhost") }
    }

    @Test("strata-pki.sh: clear error without a CA, role encoding, EKU, key modes, CA reuse")
    func pkiScript() throws {
        let dir = try makeTemporaryDirectory(prefix: "strata-pki-test")
        defer { try? FileManager.default.removeItem(at: dir) }
        let script = PKIFixture.script

        let failure = #expect(throws: ProcessFailure.self) { try run(script, ["--dir", dir.path, "agent", "a1"]) }
        #expect(failure?.output.contains("no CA in \(dir.path)") == true, "\(failure?.output ?? "")")

        try run(script, ["--dir", dir.path, "ca"])
        let caBefore = try Data(contentsOf: dir.appendingPathComponent("ca.crt"))
        try run(script, ["--dir", dir.path, "agent", "a1", "a2"])
        try run(script, ["--dir", dir.path, "admin", "ops"])
        try run(script, ["--dir", dir.path, "coordinator", "--name", "coord-1", "--san", "coord.example.org", "10.1.2.3"])
        try run(script, ["--dir", dir.path, "ca"])  // reused, not replaced
        #expect(try Data(contentsOf: dir.appendingPathComponent("ca.crt")) == caBefore)

        let agentText = try run("openssl", ["x509", "-noout", "-subject", "-ext", "extendedKeyUsage", "-in", dir.path + "/agents/a2.crt"])
        #expect(agentText.contains("O = Strata, OU = agent, CN = a2"), "\(agentText)")
        #expect(agentText.contains("TLS Web Client Authentication") && !agentText.contains("Server"))
        let coordText = try run("openssl", ["x509", "-noout", "-subject", "-ext", "subjectAltName,extendedKeyUsage", "-in", dir.path + "/coordinator.crt"])
        #expect(coordText.contains("OU = coordinator, CN = coord-1"))
        for san in ["DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1", "DNS:coord.example.org", "IP Address:10.1.2.3"] {
            #expect(coordText.contains(san), "missing \(san) in \(coordText)")
        }
        #expect(coordText.contains("TLS Web Server Authentication, TLS Web Client Authentication"))
        try run("openssl", ["verify", "-CAfile", dir.path + "/ca.crt", "-purpose", "sslclient", dir.path + "/admins/ops.crt"])
        try run("openssl", ["verify", "-CAfile", dir.path + "/ca.crt", "-purpose", "sslserver", dir.path + "/coordinator.crt"])

        for key in ["ca.key", "agents/a1.key", "admins/ops.key", "coordinator.key"] {
            let attributes = try FileManager.default.attributesOfItem(atPath: dir.path + "/" + key)
            #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600, "\(key)")
        }
        let keyText = try run("openssl", ["pkey", "-noout", "-text", "-in", dir.path + "/agents/a1.key"])
        #expect(keyText.contains("prime256v1") || keyText.contains("P-256"))

        let badID = #expect(throws: ProcessFailure.self) { try run(script, ["--dir", dir.path, "agent", "bad/id"]) }
        #expect(badID?.output.contains("invalid agent id") == true)
    }
}
