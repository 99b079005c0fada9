import Foundation
import GRDB
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import Testing

/// Network faults between real agents and the real coordinator (mutual TLS through a `FaultProxy`):
/// a connection cut in the middle of a frame, a stalled (hung) connection, a slow link, repeated drops.
/// Each federation test ends by checking exactly-once delivery from the persisted state of the
/// coordinator and of every agent.
extension IntegrationSuite {
    @Suite(.serialized) struct FaultProxyTests {
        /// The proxy itself, between a plain TCP client and an echo server: each fault does what it says.
        @Test(.timeLimit(.minutes(1)))
        func proxyFaultsDoWhatTheySay() throws {
            let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
            defer { try? group.syncShutdownGracefully() }
            let targets = NIOLockedValueBox<[Transcript]>([])
            let server = try ServerBootstrap(group: group)
                .childChannelInitializer { channel in
                    let transcript = Transcript()
                    targets.withLockedValue { $0.append(transcript) }
                    return channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Recorder(transcript, echo: true)) }
                }
                .bind(host: "127.0.0.1", port: 0).wait()
            defer { try? server.close().wait() }
            let proxy = try FaultProxy(targetPort: server.localAddress!.port!)
            defer { proxy.shutdown() }
            func connect() throws -> (any Channel, Transcript) {
                let transcript = Transcript()
                let channel = try ClientBootstrap(group: group)
                    .channelInitializer { channel in
                        channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Recorder(transcript, echo: false)) }
                    }
                    .connect(host: "127.0.0.1", port: proxy.port).wait()
                return (channel, transcript)
            }
            func send(_ text: String, on channel: any Channel) throws { try channel.writeAndFlush(ByteBuffer(string: text)).wait() }
            let (client, echoed) = try connect()
            let target = { targets.withLockedValue { $0.last! } }

            try send("hello", on: client)
            try waitUntil("the echo through the proxy", timeout: 10) { echoed.text == "hello" }

            // Delay: each chunk 200 ms late in each direction, in order.
            proxy.set(.delay(.milliseconds(200)))
            let delayedAt = ContinuousClock.now
            for chunk in ["a", "b", "c"] { try send(chunk, on: client) }
            try waitUntil("the delayed echo", timeout: 10) { echoed.text == "helloabc" }
            #expect(ContinuousClock.now - delayedAt >= .milliseconds(400))

            // Stall: nothing passes, the connections stay open; everything held goes through afterwards, in order.
            proxy.set(.stall)
            try send("xy", on: client)
            Thread.sleep(forTimeInterval: 0.5)
            #expect(target().text == "helloabc" && echoed.text == "helloabc")
            #expect(client.isActive && !target().closed)
            proxy.set(.pass)
            try waitUntil("the held bytes after the stall", timeout: 10) { echoed.text == "helloabcxy" }

            // Cut: exactly 5 more bytes reach the target, then both sides are closed.
            proxy.set(.cutAfter(bytes: 5, .toCoordinator))
            try send("0123456789", on: client)
            try waitUntil("both sides closed by the cut", timeout: 10) { echoed.closed && target().closed }
            #expect(target().text == "helloabcxy01234")
            #expect(proxy.cutCount == 1)

            // cutAll closes the live connections; the count of accepted connections goes on.
            proxy.set(.pass)
            let (second, secondEchoed) = try connect()
            try send("again", on: second)
            try waitUntil("the echo on a second connection", timeout: 10) { secondEchoed.text == "again" }
            proxy.cutAll()
            try waitUntil("cutAll to close the second connection", timeout: 10) { secondEchoed.closed && target().closed }
            #expect(proxy.acceptedCount == 2)
        }

        @Test(.timeLimit(.minutes(3)))
        func connectionCutMidFrameAgentsReconnectAndResendPendingUpdates() throws {
            let run = try ProxiedFederation("cut", agents: 3)
            defer { run.shutdown() }
            try run.eventually("the federation to commit version 5", timeout: 90) { try run.latestVersion() >= 5 }
            let acceptedBefore = run.proxy.acceptedCount
            let lostBefore = run.agentIDs.map { run.agentLines($0, containing: "connection lost; reconnecting").count }

            // An update is several KB and the agents train back to back: 100 bytes into the agent → coordinator
            // direction ends inside a frame (inside a TLS record), on every agent's connection.
            run.proxy.set(.cutAfter(bytes: 100, .toCoordinator))
            try run.eventually("every agent to lose its connection to the cut", timeout: 30) {
                zip(run.agentIDs, lostBefore).allSatisfy { run.agentLines($0, containing: "connection lost; reconnecting").count > $1 }
            }
            run.proxy.set(.pass)
            let afterCut = try run.latestVersion()
            #expect(run.proxy.cutCount >= run.agentIDs.count)

            try run.eventually("every agent to open a new session", timeout: 60) {
                run.agentIDs.allSatisfy { run.sessionsOpened(by: $0).count >= 2 }
            }
            #expect(run.proxy.acceptedCount > acceptedBefore)
            // An update cut off mid-frame was pending at its agent; the new session sends it again first.
            let resent = run.agentIDs.map { run.sessionsOpened(by: $0).dropFirst().reduce(0, +) }
            #expect(resent.reduce(0, +) > 0, "no agent re-sent a pending update after the cut; agents' resend counts: \(resent)")

            try run.eventually("versions after the cut with an update from every agent", timeout: 60) {
                try run.latestVersion() >= afterCut + 5 && run.contributors(after: afterCut) == Set(run.agentIDs)
            }
            try run.stop()
            try run.verifyExactlyOnce()
            print("cut: \(run.proxy.cutCount) connections cut, \(run.proxy.acceptedCount) accepted, re-sent after the cut: \(resent)")
        }

        @Test(.timeLimit(.minutes(3)))
        func stalledConnectionIsClosedByBothSidesAndTrainingResumes() throws {
            let run = try ProxiedFederation("stall", agents: 2)
            defer { run.shutdown() }
            try run.eventually("the federation to commit version 5", timeout: 90) { try run.latestVersion() >= 5 }

            // Both TCP connections stay open but nothing goes through, closes included: a hung peer.
            let stalledAt = Date()
            run.proxy.set(.stall)
            try run.eventually("the coordinator to close every silent session after its idle timeout", timeout: 20) {
                run.agentIDs.allSatisfy { id in
                    run.coordinatorLines(containing: "agent left", "client=\(id) ", "reason=nothing received for").count >= 1
                }
            }
            try run.eventually("every agent to give up on the connection without heartbeat replies", timeout: 20) {
                run.agentIDs.allSatisfy { !run.agentLines($0, containing: "connection lost; reconnecting", "no heartbeat reply for").isEmpty }
            }
            let stalledFor = Date().timeIntervalSince(stalledAt)
            #expect(stalledFor >= 3, "the stall must outlast the idle timeout (3 s): \(stalledFor) s")
            run.proxy.set(.pass)
            let afterStall = try run.latestVersion()

            try run.eventually("every agent to open a new session", timeout: 60) {
                run.agentIDs.allSatisfy { run.sessionsOpened(by: $0).count >= 2 }
            }
            try run.eventually("versions after the stall with an update from every agent", timeout: 60) {
                try run.latestVersion() >= afterStall + 5 && run.contributors(after: afterStall) == Set(run.agentIDs)
            }
            try run.stop()
            try run.verifyExactlyOnce()
            print("stall: held \(String(format: "%.1f", stalledFor)) s, \(run.proxy.acceptedCount) connections accepted")
        }

        @Test(.timeLimit(.minutes(3)))
        func slowLinkKeepsEverySessionAndKeepsCommitting() throws {
            let run = try ProxiedFederation("delay", agents: 2)
            defer { run.shutdown() }
            try run.eventually("the federation to commit version 5", timeout: 90) { try run.latestVersion() >= 5 }
            let acceptedBefore = run.proxy.acceptedCount
            let before = try run.latestVersion()

            // 300 ms each way: a heartbeat round trip takes 600 ms, well inside both sides' timeouts.
            let delayedAt = Date()
            run.proxy.set(.delay(.milliseconds(300)))
            try run.eventually("10 versions committed over the delayed link, for at least 8 s", timeout: 90) {
                try run.latestVersion() >= before + 10 && Date().timeIntervalSince(delayedAt) >= 8
            }
            let passedAt = Date()
            run.proxy.set(.pass)
            let delayed = try run.latestVersion() - before

            // The delay was real: every task dispatched and answered under it took at least two delays.
            let latencies = try run.db.read { db in
                try Double.fetchAll(db, sql: """
                    SELECT c.latencySeconds FROM committedUpdates c JOIN tasks t ON t.id = c.taskID
                    WHERE c.latencySeconds IS NOT NULL AND t.dispatchedAt > ? AND t.dispatchedAt + c.latencySeconds < ?
                    """, arguments: [delayedAt.timeIntervalSince1970, passedAt.timeIntervalSince1970])
            }
            #expect(!latencies.isEmpty)
            #expect((latencies.min() ?? 0) >= 0.6, "task-to-update latencies under a 300 ms delay: \(latencies)")
            // And it dropped nothing.
            #expect(run.proxy.acceptedCount == acceptedBefore)
            #expect(run.coordinatorLines(containing: "agent left").isEmpty, "\(run.coordinatorLines(containing: "agent left"))")
            for id in run.agentIDs {
                #expect(run.sessionsOpened(by: id).count == 1, "\(id) reconnected:\n\(run.agentLog(id).suffix(1500))")
            }

            let afterDelay = try run.latestVersion()
            try run.eventually("versions after the delay with an update from every agent", timeout: 60) {
                try run.latestVersion() >= afterDelay + 3 && run.contributors(after: afterDelay) == Set(run.agentIDs)
            }
            try run.stop()
            try run.verifyExactlyOnce()
            print("delay: \(delayed) versions over the delayed link, latencies \(String(format: "%.2f", latencies.min() ?? 0))–\(String(format: "%.2f", latencies.max() ?? 0)) s")
        }

        @Test(.timeLimit(.minutes(3)))
        func everyDropAfterAHealthySessionIsAFirstReconnectAttempt() throws {
            // --max-connect-attempts counts consecutive failed attempts: drops separated by healthy sessions
            // must neither exhaust it nor stretch the backoff. (Each drop also tears sessions down while their
            // updates are being handled: the coordinator must take that in its stride.)
            let run = try ProxiedFederation("drops", agents: 2, agentFlags: ["--max-connect-attempts", "2"])
            defer { run.shutdown() }
            try run.eventually("the federation to commit version 3", timeout: 90) { try run.latestVersion() >= 3 }
            let drops = 5
            for drop in 1...drops {
                let opened = run.agentIDs.map { run.sessionsOpened(by: $0).count }
                run.proxy.cutAll()
                try run.eventually("drop \(drop): every agent in a new session", timeout: 30) {
                    zip(run.agentIDs, opened).allSatisfy { run.sessionsOpened(by: $0).count > $1 }
                }
                let reconnected = try run.latestVersion()
                try run.eventually("drop \(drop): versions with an update from every agent's new session", timeout: 60) {
                    try run.contributors(after: reconnected) == Set(run.agentIDs)
                }
            }
            for (id, agent) in zip(run.agentIDs, run.agents) {
                #expect(agent.isRunning, "\(id) exited:\n\(run.agentLog(id).suffix(1500))")
                let attempts = run.agentLines(id, containing: "connection lost; reconnecting").map { line in
                    line.split(separator: " ").first { $0.hasPrefix("attempt=") }.map { String($0.dropFirst("attempt=".count)) } ?? "?"
                }
                #expect(attempts == Array(repeating: "1", count: drops), "\(id): reconnect attempts after each drop")
            }
            try run.stop()
            try run.verifyExactlyOnce()
        }
    }
}

/// A coordinator and agents whose every connection goes through a `FaultProxy`. `shutdown()` (also run
/// on deinit) stops the proxy and every process, so a test that fails half-way leaves nothing running.
final class ProxiedFederation {
    let box: Sandbox
    let proxy: FaultProxy
    let coordinator: Process
    let agentIDs: [String]
    private(set) var agents: [Process] = []
    /// The coordinator's state (WAL: reading never blocks its writer).
    let db: DatabaseQueue

    /// Heartbeats every 0.5 s, sessions silent for 3 s closed; FedBuff with K = 2, no evaluation rounds.
    init(_ name: String, agents count: Int, agentFlags: [String] = []) throws {
        box = Sandbox("proxy-\(name)")
        try box.makePKI(agents: count)
        let data = try box.run(Binaries.path("strata-datagen"), ["--out", box.file("data"), "--clients", "\(count)", "--seed", "5", "--max-samples", "120"])
        guard data.status == 0 else { throw HarnessError.exited("strata-datagen failed: \(data.output)") }
        let started = try box.startCoordinator([
            "--mode", "fedbuff", "--buffer-size", "2", "--evaluate-every", "0",
            "--heartbeat-interval", "0.5", "--idle-timeout", "3", "--max-duration", "170",
        ])
        coordinator = started.0
        proxy = try FaultProxy(targetPort: started.1)
        agentIDs = (1...count).map { String(format: "agent-%02d", $0) }
        db = try DatabaseQueue(path: box.file("coordinator.sqlite"))
        for (i, id) in agentIDs.enumerated() {
            agents.append(try box.start(Binaries.path("strata-agent"),
                                        box.agentArguments(port: proxy.port, id: id, database: box.file(String(format: "data/client-%02d.sqlite", i + 1)),
                                                           extra: agentFlags),
                                        log: "\(id).log"))
        }
    }

    deinit { shutdown() }

    /// Stops the proxy and every process still running. Safe to call more than once.
    func shutdown() {
        proxy.shutdown()
        for process in [coordinator] + agents where process.isRunning { process.terminate() }
        for process in [coordinator] + agents { process.waitUntilExit() }
    }

    /// Ends the run cleanly: the coordinator drains on SIGTERM (exit 0), then the agents are stopped, so
    /// both sides' databases are at rest for `verifyExactlyOnce`.
    func stop() throws {
        proxy.set(.pass)
        coordinator.terminate()
        try box.waitForExit(coordinator, timeout: 30)
        #expect(coordinator.terminationStatus == 0, "coordinator log:\n\(log("coordinator").suffix(2000))")
        for agent in agents where agent.isRunning { agent.terminate() }
        for agent in agents { try box.waitForExit(agent, timeout: 30) }
        // Faults end connections; they never make either side break the protocol or give up.
        for line in coordinatorLines(containing: "CRITICAL") + coordinatorLines(containing: "protocol violation") {
            Issue.record("coordinator: \(line)")
        }
        for id in agentIDs {
            for line in agentLines(id, containing: "unexpected message") + agentLines(id, containing: "CRITICAL") { Issue.record("\(id): \(line)") }
        }
    }

    // MARK: Observing

    /// Polls `condition` until it holds; fails after `timeout` seconds naming what it waited for, with the logs' tails,
    /// or at once if the coordinator exited.
    func eventually(_ what: String, timeout: Double, _ condition: () throws -> Bool) throws {
        let logs = {
            let descriptors = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd").count).map { "\($0)" } ?? "?"
            return "open file descriptors: \(descriptors)\n" + (["coordinator"] + self.agentIDs).map { "--- \($0).log:\n\(self.log($0).suffix(1200))" }.joined(separator: "\n")
        }
        try waitUntil(what, timeout: timeout, context: logs) {
            guard coordinator.isRunning else { throw HarnessError.exited("the coordinator exited while waiting for \(what)\n\(logs())") }
            return try condition()
        }
    }

    func latestVersion() throws -> Int64 {
        try db.read { try Int64.fetchOne($0, sql: "SELECT MAX(version) FROM modelVersions") ?? 0 }
    }

    /// Clients with an update in a version after `version`.
    func contributors(after version: Int64) throws -> Set<String> {
        Set(try db.read { try String.fetchAll($0, sql: "SELECT DISTINCT clientID FROM committedUpdates WHERE version > ?", arguments: [version]) })
    }

    /// The text of `NAME.log` (invalid UTF-8 replaced, so a stray byte cannot hide a whole log).
    func log(_ name: String) -> String {
        guard let data = FileManager.default.contents(atPath: box.file("\(name).log")) else { return "<cannot read \(name).log>" }
        return String(decoding: data, as: UTF8.self)
    }

    func agentLog(_ id: String) -> String { log(id) }

    /// Coordinator log lines containing every one of `needles`.
    func coordinatorLines(containing needles: String...) -> [Substring] {
        Self.lines(of: log("coordinator"), containing: needles)
    }

    /// The agent's log lines containing every one of `needles`.
    func agentLines(_ id: String, containing needles: String...) -> [Substring] {
        Self.lines(of: agentLog(id), containing: needles)
    }

    static func lines(of log: String, containing needles: [String]) -> [Substring] {
        log.split(separator: "\n").filter { line in needles.allSatisfy { line.contains($0) } }
    }

    /// One entry per session the agent opened: how many pending updates it re-sent first.
    func sessionsOpened(by id: String) -> [Int] {
        agentLines(id, containing: ": connected ").map { line in
            guard let field = line.split(separator: " ").first(where: { $0.hasPrefix("resending=") }) else { return 0 }
            return Int(field.dropFirst("resending=".count)) ?? 0
        }
    }

    // MARK: Exactly once

    /// From the persisted state, once everything stopped: versions dense from 0; no task committed twice;
    /// every update an agent recorded as committed is in the coordinator's `committedUpdates` once, in the
    /// version its ack named; every committed update is known to its agent (acknowledged, or still pending
    /// and to be re-sent); nothing refused.
    func verifyExactlyOnce() throws {
        let versions = try db.read { try Int64.fetchAll($0, sql: "SELECT version FROM modelVersions ORDER BY version") }
        #expect(!versions.isEmpty && versions == Array(0...(versions.last ?? 0)), "model versions are not dense: \(versions)")
        let twice = try db.read { try Int64.fetchAll($0, sql: "SELECT taskID FROM committedUpdates GROUP BY taskID HAVING COUNT(*) > 1") }
        #expect(twice.isEmpty, "tasks committed more than once: \(twice)")
        let rows = try db.read { try Row.fetchAll($0, sql: "SELECT taskID, clientID, version FROM committedUpdates") }
        var committed: [Int64: (client: String, version: Int64)] = [:]
        for row in rows { committed[row["taskID"]] = (row["clientID"], row["version"]) }
        let refused = try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM refusedUpdates") ?? 0 }
        #expect(refused == 0, "the coordinator refused \(refused) updates")

        var ackedBy: [Int64: String] = [:]
        for id in agentIDs {
            let state = try DatabaseQueue(path: box.file("\(id).state.sqlite"))
            let acks = try state.read { try Row.fetchAll($0, sql: "SELECT taskID, status, modelVersion FROM acknowledged") }
            let pending = Set(try state.read { try Int64.fetchAll($0, sql: "SELECT taskID FROM pendingUpdates") })
            var acked: Set<Int64> = []
            for ack in acks {
                let taskID: Int64 = ack["taskID"], status: String = ack["status"], version: Int64 = ack["modelVersion"]
                #expect(status == "committed", "\(id): task \(taskID) acknowledged as \(status)")
                guard status == "committed" else { continue }
                acked.insert(taskID)
                #expect(ackedBy[taskID] == nil, "task \(taskID) acknowledged to \(id) and to \(ackedBy[taskID] ?? "")")
                ackedBy[taskID] = id
                let entry = committed[taskID]
                #expect(entry?.client == id && entry?.version == version,
                        "\(id): task \(taskID) acknowledged as committed in version \(version); the coordinator has \(entry.map { "\($0.client), version \($0.version)" } ?? "nothing")")
            }
            #expect(!acked.isEmpty, "\(id) has no committed update")
            let unknown = committed.filter { $0.value.client == id && !acked.contains($0.key) && !pending.contains($0.key) }.keys.sorted()
            #expect(unknown.isEmpty, "\(id) neither acknowledged nor still holds committed tasks \(unknown)")
        }
    }
}

/// Polls `condition` every 0.1 s until it holds; after `timeout` seconds fails, naming what it waited for.
func waitUntil(_ what: String, timeout: Double, context: () -> String = { "" }, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return }
        Thread.sleep(forTimeInterval: 0.1)
    }
    throw HarnessError.timeout("waited \(timeout) s for \(what)\n\(context())")
}

/// What one end of a test connection read, and whether its peer closed.
final class Transcript: Sendable {
    private let state = NIOLockedValueBox((text: "", closed: false))
    var text: String { state.withLockedValue { $0.text } }
    var closed: Bool { state.withLockedValue { $0.closed } }
    func append(_ text: String) { state.withLockedValue { $0.text += text } }
    func close() { state.withLockedValue { $0.closed = true } }
}

/// Records what its channel reads into a transcript, echoing it back if asked.
private final class Recorder: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer
    private let transcript: Transcript
    private let echo: Bool

    init(_ transcript: Transcript, echo: Bool) {
        self.transcript = transcript
        self.echo = echo
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = Self.unwrapInboundIn(data)
        transcript.append(String(buffer: bytes))
        if echo { context.writeAndFlush(Self.wrapOutboundOut(bytes), promise: nil) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        transcript.close()
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
