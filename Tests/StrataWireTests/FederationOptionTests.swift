import NIOCore
import Testing
@testable import StrataWire

/// Welcome option 2: the federation's id (docs/PROTOCOL.md §2).
@Suite struct FederationOptionTests {
    @Test func theWelcomeCarriesTheFederationAsOption2() throws {
        let welcome = Welcome(clientID: "a", sessionID: 1, heartbeatIntervalMillis: 1000, maxFrameBytes: 1 << 20,
                              model: WireModelSpec(kind: .softmaxRegression, featureCount: 8, outputCount: 3), federationID: 0x1234_5678_9abc_def0)
        var buffer = WireCodec.encode(.welcome(welcome))
        guard case .welcome(let decoded) = try WireCodec.decodeFrame(from: &buffer, maxPayloadBytes: 1 << 20) else { Issue.record("not a welcome"); return }
        #expect(decoded.federationID == 0x1234_5678_9abc_def0)
        let bytes = Array(WireCodec.encode(.welcome(welcome)).readableBytesView)
        // key 2, length 8, the id little-endian
        let option: [UInt8] = [0x02, 0x00, 0x08, 0x00, 0x00, 0x00, 0xf0, 0xde, 0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12]
        #expect((0...(bytes.count - option.count)).contains { Array(bytes[$0..<$0 + option.count]) == option })
    }
}
