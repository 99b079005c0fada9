import Foundation
import GRDB
import NIOCore
import StrataWire
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Memory and connection limits of the agent port, and the state database checks, on the real programs.
extension IntegrationSuite {
    @Suite(.serialized) struct LimitsTests {
        /// The value of one sample of the coordinator's /metrics (labels as `key="value"` pairs, in order).
        static func metric(_ box: Sandbox, _ name: String, _ labels: String = "") throws -> Double? {
            let body = try httpGet(port: try box.endpointPort("metrics"), path: "/metrics").body
            let key = labels.isEmpty ? name + " " : name + "{" + labels + "} "
            guard let line = body.split(separator: "\n").first(where: { $0.hasPrefix(key) }) else { return nil }
            return Double(line.dropFirst(key.count).split(separator: " ").first ?? "")
        }

        static func residentBytes(_ process: Process) -> Int? {
            guard let status = try? String(contentsOfFile: "/proc/\(process.processIdentifier)/status", encoding: .utf8),
                  let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
                  let kib = Int(line.dropFirst(6).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") else { return nil }
            return kib * 1024
        }

        @Test(.timeLimit(.minutes(2)))
        func aConnectionThatNeverStartsTLSIsClosedAtTheHandshakeTimeout() throws {
            let box = Sandbox("handshake-timeout")
            try box.makePKI(agents: 1)
            let (_, port) = try box.startCoordinator(["--max-duration", "60", "--handshake-timeout", "1"])
            let probe = try TCPProbe(port: port)
            let opened = Date()
            try eventually("the coordinator closes a silent TCP connection", timeout: 8) { probe.closedByPeer() }
            let elapsed = Date().timeIntervalSince(opened)
            #expect(elapsed >= 0.8, "closed after \(elapsed) s, before the 1 s handshake timeout")
            #expect(elapsed < 5, "closed only after \(elapsed) s")
            try eventually("the timeout is counted", timeout: 5) {
                try Self.metric(box, "strata_tls_handshake_failures_total", #"endpoint="agents",reason="handshake-timeout""#) == 1
            }
        }

        @Test(.timeLimit(.minutes(2)))
        func handshakesInProgressAreCappedAndRefusalsCounted() throws {
            let box = Sandbox("preauth-cap")
            try box.makePKI(agents: 1)
            let (_, port) = try box.startCoordinator(["--max-duration", "60", "--handshake-timeout", "30", "--max-unauthenticated-connections", "3"])
            let held = try (0..<3).map { _ in try TCPProbe(port: port) }
            try eventually("three handshakes in progress", timeout: 10) { try Self.metric(box, "strata_unauthenticated_connections") == 3 }
            let refused = try TCPProbe(port: port)
            try eventually("the fourth connection is closed at once", timeout: 3) { refused.closedByPeer() }
            #expect(held.allSatisfy { !$0.closedByPeer() }, "the connections within the limit stay open")
            #expect(try Self.metric(box, "strata_connections_refused_total", #"reason="unauthenticated-limit""#) == 1)
            held.forEach { $0.close() }
            try eventually("closed handshakes are no longer counted", timeout: 10) { try Self.metric(box, "strata_unauthenticated_connections") == 0 }
            let later = try TCPProbe(port: port)
            Thread.sleep(forTimeInterval: 0.3)
            #expect(!later.closedByPeer(), "room again once the others closed")
        }

        @Test(.timeLimit(.minutes(2)))
        func connectionsPerClientAreCapped() async throws {
            let box = Sandbox("per-client")
            try box.makePKI(agents: 1)
            let (_, port) = try box.startCoordinator(["--max-duration", "60", "--max-connections-per-client", "2"])
            let cert = box.file("pki/agents/agent-01.crt"), key = box.file("pki/agents/agent-01.key"), ca = box.file("pki/ca.crt")
            let first = try await RawClient.connect(port: port, cert: cert, key: key, ca: ca)
            let second = try await RawClient.connect(port: port, cert: cert, key: key, ca: ca)
            let third = try await RawClient.connect(port: port, cert: cert, key: key, ca: ca)
            let answer = try await third.exchange(send: [], timeout: .seconds(10)) { $0.contains { if case .error = $0 { true } else { false } } }
            await third.shutdown()
            #expect(answer.contains { if case .error(let e) = $0 { e.code == .tooManyConnections } else { false } })
            #expect(try Self.metric(box, "strata_connections_refused_total", #"reason="per-client-limit""#) == 1)

            // A closed connection frees its place: the next one is served (hello → welcome).
            _ = try? await first.exchange(send: [], timeout: .milliseconds(10)) { _ in true }
            await first.shutdown()
            let hello = WireCodec.encode(.hello(Hello(agentVersion: "raw-test", featureCount: 60, trainSampleCount: 10, evalSampleCount: 2, pendingUpdateCount: 0)))
            var welcomed = false
            for _ in 0..<20 where !welcomed {
                let next = try await RawClient.connect(port: port, cert: cert, key: key, ca: ca)
                let replies = try await next.exchange(send: [hello], timeout: .seconds(10)) { $0.contains { if case .welcome = $0 { true } else if case .error = $0 { true } else { false } } }
                await next.shutdown()
                welcomed = replies.contains { if case .welcome = $0 { true } else { false } }
                if !welcomed { try await Task.sleep(for: .milliseconds(200)) }  // the close may not be processed yet
            }
            #expect(welcomed)
            await second.shutdown()
        }

        /// Eight authenticated connections each announce a large frame, send a quarter of it and stall. The
        /// frame budget (two frames) admits two; the others are not read from. Reservations stay within the
        /// budget, the coordinator's memory grows by about the budget, and an honest agent keeps training.
        @Test(.timeLimit(.minutes(4)))
        func stalledLargeFramesStayWithinTheBudgetWhileAnHonestAgentTrains() async throws {
            let box = Sandbox("frame-budget")
            try box.makePKI(agents: 9)
            _ = try box.makeData(clients: 1)
            let maxFrame = 4 << 20
            let budget = 2 * (maxFrame + 8)
            let (coordinator, port) = try box.startCoordinator([
                "--max-duration", "180", "--buffer-size", "1", "--evaluate-every", "0", "--idle-timeout", "120",
                "--max-frame-bytes", "\(maxFrame)", "--frame-memory-budget", "\(budget)",
            ])
            let agent = try box.start(Binaries.path("strata-agent"),
                                      box.agentArguments(port: port, id: "agent-01", database: box.file("data/client-01.sqlite")), log: "agent-01.log")
            defer { agent.terminate() }
            let db = try DatabaseQueue(path: box.file("coordinator.sqlite"))
            func committed() throws -> Int {
                try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM committedUpdates WHERE clientID = 'agent-01'") ?? 0 }
            }
            try await eventually("the honest agent commits updates", timeout: 60) { try committed() >= 3 }
            let rssBefore = try #require(Self.residentBytes(coordinator))

            let hello = WireCodec.encode(.hello(Hello(agentVersion: "staller", featureCount: 60, trainSampleCount: 10, evalSampleCount: 2, pendingUpdateCount: 0)))
            let payload = 4_000_000
            var header = ByteBuffer()
            header.writeBytes([0x53, 0x54, ProtocolVersion.current, MessageType.update.rawValue])
            header.writeInteger(UInt32(payload), endianness: .little)
            let quarter = ByteBuffer(repeating: 0, count: payload / 4)
            var stallers: [RawClient] = []
            for i in 2...9 {
                let id = String(format: "agent-%02d", i)
                let client = try await RawClient.connect(port: port, cert: box.file("pki/agents/\(id).crt"), key: box.file("pki/agents/\(id).key"), ca: box.file("pki/ca.crt"))
                // Not awaited: a connection waiting for budget is not read from, so its bytes stay in the socket buffers.
                client.channel.channel.write(hello, promise: nil)
                client.channel.channel.write(header, promise: nil)
                client.channel.channel.writeAndFlush(quarter, promise: nil)
                stallers.append(client)
            }
            let frame = payload + 8
            try await eventually("two frames hold the budget and six connections wait", timeout: 30) {
                try Self.metric(box, "strata_frame_budget_reserved_bytes") == Double(2 * frame)
                    && Self.metric(box, "strata_frame_budget_waiting_connections") == 6
            }
            let progress = try committed()
            try await eventually("the honest agent still trains", timeout: 60) { try committed() >= progress + 3 }
            let rssDuring = try #require(Self.residentBytes(coordinator))
            #expect(try Self.metric(box, "strata_frame_budget_peak_bytes")! <= Double(budget))
            #expect(try Self.metric(box, "strata_frame_budget_waits_total")! >= 6)
            // Two 4 MB frames' buffers plus what the six waiting connections hold (each at most a read cycle);
            // without the budget each of the eight would allocate its whole frame (32 MB).
            let growth = rssDuring - rssBefore
            print("frame budget: RSS \(rssBefore >> 20) MiB before, \(rssDuring >> 20) MiB with 8 stalled 4 MB frames (budget \(budget >> 20) MiB)")
            #expect(growth < budget + 12 << 20, "RSS grew by \(growth >> 20) MiB")

            for client in stallers { await client.shutdown() }
            try await eventually("closed connections free their reservations", timeout: 30) {
                try Self.metric(box, "strata_frame_budget_reserved_bytes") == 0 && Self.metric(box, "strata_frame_budget_waiting_connections") == 0
            }
            #expect(coordinator.isRunning)
        }

        @Test(.timeLimit(.minutes(2)))
        func aForeignOrCorruptStateDatabaseStopsTheCoordinatorWithAMessage() throws {
            let box = Sandbox("state-check")
            try box.makePKI(agents: 1)
            let arguments = [
                "--cert", box.file("pki/coordinator.crt"), "--key", box.file("pki/coordinator.key"), "--ca", box.file("pki/ca.crt"),
                "--state", box.file("records.sqlite"), "--port", "0", "--admin-port", "0", "--metrics-port", "0",
                "--features", "60", "--classes", "10", "--max-duration", "5",
            ]
            try DatabaseQueue(path: box.file("records.sqlite")).write { db in
                try db.execute(sql: "CREATE TABLE visits (f0 REAL, outcome INTEGER); INSERT INTO visits VALUES (1.5, 1)")
            }
            let foreign = try box.run(Binaries.path("strata-coordinator"), arguments, timeout: 60)
            #expect(foreign.status == 1)
            #expect(foreign.output.contains("is not a Strata coordinator state database"), "\(foreign.output)")
            #expect(foreign.output.contains("visits"))
            #expect(!foreign.output.contains("listening"))
            let tables = try DatabaseQueue(path: box.file("records.sqlite")).read { try String.fetchAll($0, sql: "SELECT name FROM sqlite_master") }
            #expect(tables == ["visits"], "nothing was added to the refused file")
        }
    }
}

/// A plain TCP connection to loopback that sends nothing.
final class TCPProbe: @unchecked Sendable {
    private var fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw HarnessError.exited("socket() failed: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            Glibc.close(fd)
            throw HarnessError.exited("connect() to port \(port) failed: errno \(errno)")
        }
    }

    /// True once the peer closed the connection (EOF or reset); never blocks.
    func closedByPeer() -> Bool {
        guard fd >= 0 else { return true }
        var byte: UInt8 = 0
        let n = recv(fd, &byte, 1, Int32(MSG_PEEK | MSG_DONTWAIT))
        if n == 0 { return true }
        if n < 0 { return errno != EAGAIN && errno != EWOULDBLOCK }
        return false
    }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }

    deinit { close() }
}
