import Foundation
import NIOCore
import Testing

@testable import StrataTransport

@Suite("Certificate revocation lists")
struct RevocationTests {
    private func server(crl: String) throws -> TLSConfiguration {
        var configuration = try PKIFixture.get().coordinator()
        configuration.revocationListFile = crl
        return configuration
    }

    /// One handshake of `client` against a server context; what each side reported.
    private func handshake(_ client: TLSConfiguration, against serverContext: TLSContext) throws -> (server: TLSError?, client: TLSError?, admitted: PeerIdentity?) {
        let pair = try EmbeddedPair(client: client, serverContext: serverContext)
        defer { pair.finish() }
        try pair.activate()
        try pair.interact()
        return (pair.serverEvents.errors.first, pair.clientEvents.errors.first, pair.serverHandler.peerIdentity)
    }

    @Test("a revoked agent certificate is refused at the handshake; the agent learns why; others pass")
    func revokedIsRefused() throws {
        let pki = try PKIFixture.get()
        let context = try TLSContext(configuration: server(crl: pki.revokingCRL), mode: .server)
        #expect(context.revocationList?.revokedCount == 1)
        #expect(context.revocationList?.nextUpdate != nil)

        let refused = try handshake(pki.agent("revoked-01"), against: context)
        #expect(refused.admitted == nil)
        #expect(refused.server?.kind == .peerCertificateRevoked, "\(String(describing: refused.server))")
        #expect(refused.server?.reasons.contains { $0.contains("certificate revoked") } == true)
        #expect(refused.client?.kind == .certificateRefused, "\(String(describing: refused.client))")
        #expect(refused.client?.description.contains("certificate_revoked") == true, "\(String(describing: refused.client))")
        #expect(refused.client?.description.contains("revoked by the federation operator") == true)

        let accepted = try handshake(pki.agent("agent-01"), against: context)
        #expect(accepted.admitted?.commonName == "agent-01", "\(String(describing: accepted.server))")
    }

    @Test("reload: new connections use the new list; a failed reload keeps the old one")
    func reload() throws {
        let pki = try PKIFixture.get()
        let file = pki.root.appendingPathComponent("reload-\(UUID().uuidString.prefix(6)).pem").path
        try FileManager.default.copyItem(atPath: pki.emptyCRL, toPath: file)
        let context = try TLSContext(configuration: server(crl: file), mode: .server)
        #expect(try handshake(pki.agent("revoked-01"), against: context).admitted != nil)

        try FileManager.default.removeItem(atPath: file)
        try FileManager.default.copyItem(atPath: pki.revokingCRL, toPath: file)
        #expect(try context.reloadRevocationList().revokedCount == 1)
        #expect(try handshake(pki.agent("revoked-01"), against: context).server?.kind == .peerCertificateRevoked)

        // Garbage, then another CA's list: both refused with a reason; the revoking list stays in force.
        try Data("not a CRL\n".utf8).write(to: URL(fileURLWithPath: file))
        let garbage = #expect(throws: TLSError.self) { try context.reloadRevocationList() }
        #expect(garbage?.description.contains("no PEM certificate revocation list") == true, "\(String(describing: garbage))")
        try FileManager.default.removeItem(atPath: file)
        try FileManager.default.copyItem(atPath: pki.otherCACRL, toPath: file)
        let foreign = #expect(throws: TLSError.self) { try context.reloadRevocationList() }
        #expect(foreign?.description.contains("not signed by the CA") == true, "\(String(describing: foreign))")
        #expect(context.revocationList?.revokedCount == 1)
        #expect(try handshake(pki.agent("revoked-01"), against: context).server?.kind == .peerCertificateRevoked)
        #expect(try handshake(pki.agent("agent-02"), against: context).admitted?.commonName == "agent-02")
    }

    @Test("a missing or foreign CRL is a configuration error at startup")
    func badListAtStartup() throws {
        let pki = try PKIFixture.get()
        let missing = #expect(throws: TLSError.self) { try TLSContext(configuration: server(crl: pki.root.path + "/nope.pem"), mode: .server) }
        #expect(missing?.kind == .configuration)
        #expect(missing?.description.contains("strata-pki.sh") == true)
        let foreign = #expect(throws: TLSError.self) { try TLSContext(configuration: server(crl: pki.otherCACRL), mode: .server) }
        #expect(foreign?.kind == .configuration)
    }
}
