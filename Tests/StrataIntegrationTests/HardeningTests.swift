import Foundation
import NIOCore
import StrataWire
import Testing

/// What a client with a valid agent certificate can do to a live coordinator (the real program, over mutual
/// TLS on loopback): every refusal reaches it as a typed error frame, no count crashes the process.
extension IntegrationSuite {
    @Suite(.serialized) struct HardeningTests {
        static func bytes(hex: String) -> ByteBuffer {
            var buffer = ByteBuffer()
            var index = hex.startIndex
            while index < hex.endIndex {
                let next = hex.index(index, offsetBy: 2)
                buffer.writeInteger(UInt8(hex[index..<next], radix: 16)!)
                index = next
            }
            return buffer
        }

        static func errors(_ messages: [Message]) -> [ErrorMessage] {
            messages.compactMap { if case .error(let e) = $0 { e } else { nil } }
        }

        @Test(.timeLimit(.minutes(3)))
        func everyRefusalReachesThePeerAndNoCountCrashesTheCoordinator() async throws {
            let box = Sandbox("hardening")
            try box.makePKI(agents: 2)
            let (coordinator, port) = try box.startCoordinator(["--evaluate-every", "0"])
            let cert = box.file("pki/agents/agent-01.crt"), key = box.file("pki/agents/agent-01.key"), ca = box.file("pki/ca.crt")

            // The issue's frame (protocol 1 then; here as protocol 2: version 2, two more payload bytes for an empty
            // options section): a hello with trainSampleCount = 2^64 - 1 killed the coordinator (SIGILL).
            let crafted = Self.bytes(hex: "535402011d0000000100783c000000ffffffffffffffff6400000000000000000000000000")
            let client = try await RawClient.connect(port: port, cert: cert, key: key, ca: ca)
            let refused = try await client.exchange(send: [crafted]) { !Self.errors($0).isEmpty }
            await client.shutdown()
            #expect(Self.errors(refused).map(\.code) == [.outOfRange])
            #expect(coordinator.isRunning, "coordinator log:\n\(box.read("coordinator.log").suffix(2000))")

            // Refusals used to be lost before the close in 15-50 % of tries (the writer was cancelled).
            let hello = WireCodec.encode(.hello(Hello(agentVersion: "raw-test", featureCount: 60, trainSampleCount: 10, evalSampleCount: 2, pendingUpdateCount: 0)))
            let wrongData = WireCodec.encode(.hello(Hello(agentVersion: "raw-test", featureCount: 59, trainSampleCount: 10, evalSampleCount: 2, pendingUpdateCount: 0)))
            let unexpected = WireCodec.encode(.ack(Ack(taskID: 1, status: .committed, modelVersion: 0)))
            var received: [ErrorCode] = []
            for attempt in 0..<20 {
                let frames = attempt % 2 == 0 ? [hello, unexpected] : [wrongData]
                let peer = try await RawClient.connect(port: port, cert: cert, key: key, ca: ca)
                let messages = try await peer.exchange(send: frames) { !Self.errors($0).isEmpty }
                await peer.shutdown()
                received += Self.errors(messages).map(\.code)
            }
            #expect(received.count == 20, "error frames received: \(received)")
            #expect(received.filter { $0 == .unexpectedMessage }.count == 10)
            #expect(received.filter { $0 == .incompatibleData }.count == 10)
            #expect(coordinator.isRunning)
        }

        @Test(.timeLimit(.minutes(2)))
        func theCoordinatorSendsHeartbeatsAndHonoursAShortIdleTimeout() async throws {
            let box = Sandbox("idle")
            try box.makePKI(agents: 1)
            let (_, port) = try box.startCoordinator(["--evaluate-every", "0", "--heartbeat-interval", "1", "--idle-timeout", "3"])
            let hello = WireCodec.encode(.hello(Hello(agentVersion: "raw-test", featureCount: 60, trainSampleCount: 10, evalSampleCount: 2, pendingUpdateCount: 0)))
            let client = try await RawClient.connect(port: port, cert: box.file("pki/agents/agent-01.crt"), key: box.file("pki/agents/agent-01.key"), ca: box.file("pki/ca.crt"))
            let started = ContinuousClock.now
            // Silent after its hello: it answers no heartbeat, so the coordinator must close it after 3 s (not 10).
            let messages = try await client.exchange(send: [hello], timeout: .seconds(30)) { !Self.errors($0).isEmpty }
            let elapsed = ContinuousClock.now - started
            await client.shutdown()
            let requests = messages.filter { if case .heartbeat(let h) = $0 { !h.isReply } else { false } }
            #expect(requests.count >= 2, "heartbeat requests from the coordinator: \(requests.count)")
            #expect(Self.errors(messages).map(\.code) == [.heartbeatTimeout])
            #expect(elapsed >= .seconds(3) && elapsed < .seconds(8), "closed after \(elapsed)")
        }
    }
}
