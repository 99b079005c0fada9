import NIOCore
import Testing

@testable import StrataTransport

/// A certificate from the federation CA names its holder only through an exact, canonical CN: no other ASN.1
/// encoding, truncation or embedded NUL may spell (or merge into) another participant's id.
@Suite("Peer identity: CN and OU taken exactly from the certificate")
struct IdentityTests {
    /// Handshakes `certificate` (signed by the good CA) as an agent client against the coordinator and returns
    /// what the server reported.
    private func refusal(_ certificate: (cert: String, key: String)) throws -> (server: TLSError?, client: TLSError?, admitted: PeerIdentity?) {
        let pki = try PKIFixture.get()
        let pair = try EmbeddedPair(client: pki.agent(), server: pki.coordinator(), visitorClient: certificate)
        defer { pair.finish() }
        try pair.activate()
        try pair.interact()
        return (pair.serverEvents.errors.first, pair.clientEvents.errors.first, pair.serverHandler.peerIdentity)
    }

    @Test("a BMPString CN whose bytes spell an existing id (agent-02) is refused at the handshake")
    func bmpStringCommonName() throws {
        let pki = try PKIFixture.get()
        let result = try refusal(pki.aliasing(.bmpString))
        #expect(result.admitted == nil, "admitted as '\(result.admitted?.commonName ?? "")'")
        let error = try #require(result.server)
        #expect(error.kind == .peerIdentityInvalid, "\(error)")
        #expect(error.detail?.contains("BMPString") == true, "\(error)")
        // The client learns it from the server's alert on its first read, with advice.
        #expect(result.client?.kind == .certificateRefused, "\(String(describing: result.client))")
    }

    @Test("two 300-byte CNs differing after byte 256 are both refused, not truncated into one id")
    func overlongCommonNames() throws {
        let pki = try PKIFixture.get()
        for which in [PKIFixture.Aliasing.long1, .long2] {
            let result = try refusal(pki.aliasing(which))
            #expect(result.admitted == nil, "\(which) admitted as \(result.admitted?.commonName.count ?? 0) characters")
            #expect(result.server?.kind == .peerIdentityInvalid)
            #expect(result.server?.detail?.contains("300 bytes long") == true, "\(String(describing: result.server))")
        }
    }

    @Test("a CN with a NUL byte (agent-02\\0evil) is refused")
    func nulByteInCommonName() throws {
        let pki = try PKIFixture.get()
        let result = try refusal(pki.aliasing(.nulByte))
        #expect(result.admitted == nil, "admitted as '\(result.admitted?.commonName ?? "")'")
        #expect(result.server?.kind == .peerIdentityInvalid)
        #expect(result.server?.detail?.contains("NUL") == true, "\(String(describing: result.server))")
    }

    @Test("a CN outside the strata-pki.sh alphabet is refused")
    func commonNameOutsideTheAlphabet() throws {
        let pki = try PKIFixture.get()
        let result = try refusal(pki.aliasing(.space))
        #expect(result.admitted == nil)
        #expect(result.server?.kind == .peerIdentityInvalid)
        #expect(result.server?.detail?.contains("0x20") == true, "\(String(describing: result.server))")
    }

    @Test("the name rule is the pki script's: 1-64 of [A-Za-z0-9._-], first a letter or digit")
    func nameRule() {
        for good in ["a", "agent-01", "hospital_b.eu", "0", String(repeating: "x", count: 64)] {
            #expect(StrataName.problem(Array(good.utf8)) == nil, "\(good)")
        }
        for bad in ["", "-agent", ".hidden", "_x", "agent 01", "agent/01", "agenté", "a\u{0}b", String(repeating: "x", count: 65)] {
            #expect(StrataName.problem(Array(bad.utf8)) != nil, "\(bad)")
        }
    }

    @Test("viewer certificates authenticate with role viewer")
    func viewerRole() throws {
        let pki = try PKIFixture.get()
        let pair = try EmbeddedPair(client: pki.viewer(), server: pki.coordinator())
        defer { pair.finish() }
        try pair.activate()
        try pair.interact()
        #expect(pair.serverHandler.peerIdentity?.role == .viewer)
        #expect(pair.serverHandler.peerIdentity?.commonName == "auditor")
    }
}
