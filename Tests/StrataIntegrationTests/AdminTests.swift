import Foundation
import GRDB
import NIOCore
import NIOPosix
import StrataCore
import Testing

/// stratactl against a real coordinator and agents over mutual TLS on loopback: every command, its --json
/// output parsed and checked, the refusals, and pin/evict taking effect on the running federation.
extension IntegrationSuite {
    @Suite(.serialized) struct AdminTests {
        /// Runs stratactl with the sandbox's admin certificate (or `cert`/`key`); returns status and output.
        static func ctl(_ box: Sandbox, adminPort: Int, _ arguments: [String], cert: String? = nil, key: String? = nil) throws -> (status: Int32, output: String) {
            let result = try ctlSeparately(box, adminPort: adminPort, arguments, cert: cert, key: key)
            return (result.status, result.stdout + result.stderr)
        }

        static func ctlSeparately(_ box: Sandbox, adminPort: Int, _ arguments: [String], cert: String? = nil, key: String? = nil) throws -> (status: Int32, stdout: String, stderr: String) {
            try box.runSeparately(Binaries.path("stratactl"), arguments + [
                "--coordinator", "127.0.0.1:\(adminPort)",
                "--cert", cert ?? box.file("pki/admins/operator.crt"), "--key", key ?? box.file("pki/admins/operator.key"),
                "--ca", box.file("pki/ca.crt"),
            ], timeout: 60)
        }

        /// Runs a stratactl command that must succeed with --json and returns the parsed object.
        static func json(_ box: Sandbox, adminPort: Int, _ arguments: [String]) throws -> [String: Any] {
            let result = try ctlSeparately(box, adminPort: adminPort, arguments + ["--json"])
            try #require(result.status == 0, "stratactl \(arguments) exited \(result.status): \(result.stdout) \(result.stderr)")
            let object = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
            return try #require(object as? [String: Any], "stratactl \(arguments) printed no JSON object: stdout '\(result.stdout)' stderr '\(result.stderr)'")
        }

        @Test(.timeLimit(.minutes(6)))
        func everyCommandOnARunningFederation() throws {
            let box = Sandbox("admin")
            try box.makePKI(agents: 4)
            let data = try box.run(Binaries.path("strata-datagen"), ["--out", box.file("data"), "--clients", "4", "--seed", "5", "--max-samples", "120"])
            try #require(data.status == 0, "\(data.output)")
            let (coordinator, port) = try box.startCoordinator([
                "--mode", "strata", "--tiers", "2", "--min-tier-size", "1", "--profiling-tasks", "2", "--buffer-size", "2",
                "--buffer-timeout", "2", "--evaluate-every", "0", "--evaluate-interval", "0.5", "--max-duration", "300", "--retier-interval", "1",
                "--keep-models", "0",   // every version keeps its parameters: the export below may pick any evaluated one
            ])
            let admin = try box.endpointPort("admin")
            func startAgent(_ id: String, cert: String? = nil, key: String? = nil) throws -> Process {
                let index = Int(id.suffix(2)) ?? 1
                // agent-04 answers every training task at least 1 s late: the slow tier.
                let delay = id == "agent-04" ? ["--task-delay", "1.0"] : []
                return try box.start(Binaries.path("strata-agent"),
                                     box.agentArguments(port: port, id: id, cert: cert, key: key,
                                                        database: box.file(String(format: "data/client-%02d.sqlite", index)), extra: delay),
                                     log: "\(id)-\(UUID().uuidString.prefix(4)).log")
            }
            var agents: [String: Process] = [:]
            for id in ["agent-01", "agent-02", "agent-03", "agent-04"] { agents[id] = try startAgent(id) }
            defer { for agent in agents.values where agent.isRunning { agent.terminate() } }
            let db = try DatabaseQueue(path: box.file("coordinator.sqlite"))
            let context = { "coordinator log:\n\(box.read("coordinator.log").suffix(3000))" }

            // tiers: formed, the delayed agent alone in the slow tier, with its latency band.
            try eventually("tiers formed with every agent", timeout: 90) {
                let t = try Self.json(box, adminPort: admin, ["tiers"])
                let tiers = t["tiers"] as? [[String: Any]] ?? []
                return t["formed"] as? Bool == true && tiers.reduce(0) { $0 + (($1["members"] as? [String])?.count ?? 0) } == 4
            }
            try eventually("both tiers have stepped", timeout: 90) {
                let tiers = try Self.json(box, adminPort: admin, ["tiers"])["tiers"] as? [[String: Any]] ?? []
                return tiers.count == 2 && tiers.allSatisfy { ($0["version"] as? Int ?? 0) >= 1 }
            }
            let tiers = try Self.json(box, adminPort: admin, ["tiers"])["tiers"] as? [[String: Any]] ?? []
            #expect(tiers[1]["members"] as? [String] == ["agent-04"], "\(tiers)")
            #expect((tiers[1]["latencyMin"] as? Double ?? 0) >= 1.0)
            #expect((tiers[0]["latencyMax"] as? Double ?? 9) < 1.0)
            #expect(tiers.allSatisfy { $0["weight"] is Double })
            #expect(try Self.ctl(box, adminPort: admin, ["tiers"]).output.contains("agent-04"))

            // status: mode, versions, accuracy, tiers and clients by health.
            try eventually("an evaluated version", timeout: 60) { try Self.json(box, adminPort: admin, ["status"])["latestAccuracy"] is Double }
            let status = try Self.json(box, adminPort: admin, ["status"])
            #expect(status["mode"] as? String == "strata")
            #expect((status["globalVersion"] as? Int ?? 0) >= 2)
            #expect((status["tiers"] as? [Any])?.count == 2)
            #expect((status["clientsByHealth"] as? [String: Int])?["healthy"] == 4)
            #expect(status["ready"] as? Bool == true)
            let human = try Self.ctl(box, adminPort: admin, ["status"])
            #expect(human.status == 0 && human.output.contains("mode            strata") && human.output.contains("UPDATES/S"), "\(human.output)")

            // clients with filters, and one client's history.
            let all = try Self.json(box, adminPort: admin, ["clients"])["clients"] as? [[String: Any]] ?? []
            #expect(all.map { $0["id"] as? String } == ["agent-01", "agent-02", "agent-03", "agent-04"])
            let slow = try Self.json(box, adminPort: admin, ["clients", "--tier", "1"])["clients"] as? [[String: Any]] ?? []
            #expect(slow.map { $0["id"] as? String } == ["agent-04"])
            let healthy = try Self.json(box, adminPort: admin, ["clients", "--state", "healthy"])["clients"] as? [[String: Any]] ?? []
            #expect(healthy.count == 4)
            let detail = try Self.json(box, adminPort: admin, ["client", "agent-04"])
            let history = detail["updates"] as? [[String: Any]] ?? []
            // Newest first: its latest updates went to the slow tier (the profiling ones, before formation, to tier 0).
            #expect(history.first?["tier"] as? Int == 1, "\(history)")
            #expect(history.contains { ($0["latencySeconds"] as? Double ?? 0) >= 1.0 })
            #expect((detail["tierMoves"] as? [[String: Any]])?.contains { $0["reason"] as? String == "formation" && $0["to"] as? Int == 1 } == true)
            #expect((detail["healthEvents"] as? [[String: Any]])?.contains { $0["to"] as? String == "healthy" } == true)
            #expect(try Self.ctl(box, adminPort: admin, ["client", "agent-04"]).output.contains("Latency history"))

            // models: newest first, with provenance and accuracy.
            let models = try Self.json(box, adminPort: admin, ["models", "--limit", "5"])
            let global = models["global"] as? [[String: Any]] ?? []
            #expect(global.count == 5)
            let numbers = global.compactMap { $0["version"] as? Int }
            #expect(numbers == numbers.sorted(by: >))
            #expect(global.allSatisfy { ($0["tierVersions"] as? [Int])?.count == 2 && $0["tier"] is Int })
            #expect(!(models["tiers"] as? [Any] ?? []).isEmpty)
            let evaluated = try #require(try db.read { try Int64.fetchOne($0, sql: "SELECT MAX(modelVersion) FROM evaluations") })
            let evaluatedModels = try Self.json(box, adminPort: admin, ["models", "--limit", "1000"])["global"] as? [[String: Any]] ?? []
            #expect(evaluatedModels.first { $0["version"] as? Int == Int(evaluated) }?["accuracy"] is Double)

            // export-model: NumPy reads exactly the stored parameters.
            let exported = try Self.json(box, adminPort: admin, ["export-model", "\(evaluated)", "--out", box.file("model.npz")])
            #expect(exported["version"] as? Int == Int(evaluated) && exported["file"] as? String == "model.npz", "\(exported)")
            #expect(try Self.ctl(box, adminPort: admin, ["export-model", "\(evaluated)", "--out", box.file("model.npz")]).status == 6)   // exists, no --force
            let stored = try #require(try db.read { try Data.fetchOne($0, sql: "SELECT parameters FROM modelVersions WHERE version = ?", arguments: [evaluated]) })
            let expected = stored.withUnsafeBytes { raw in (0..<stored.count / 4).map { Float(bitPattern: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)) } }
            let python = try box.run("/usr/bin/env", ["python3", "-c", """
                import json, numpy
                m = numpy.load("\(box.file("model.npz"))")
                meta = json.load(open("\(box.file("model.json"))"))
                print(json.dumps({"weight": list(m["weight"].shape), "bias": list(m["bias"].shape), "dtype": str(m["weight"].dtype),
                                  "values": [float(v) for v in numpy.concatenate([m["weight"].ravel(), m["bias"]])], "version": meta["version"]}))
                """])
            try #require(python.status == 0, "python3 with numpy could not read the export: \(python.output)")
            let loaded = try #require(try JSONSerialization.jsonObject(with: Data(python.output.utf8)) as? [String: Any])
            #expect(loaded["weight"] as? [Int] == [60, 10] && loaded["bias"] as? [Int] == [10] && loaded["dtype"] as? String == "float32")
            #expect((loaded["values"] as? [Double])?.map { Float($0) } == expected)
            #expect(loaded["version"] as? Int == Int(evaluated))

            // pin takes effect: agent-02 moves to the slow tier now and its next updates land there.
            let pinned = try Self.json(box, adminPort: admin, ["pin", "agent-02", "1"])
            #expect((pinned["moves"] as? [[String: Any]])?.first?["to"] as? Int == 1, "\(pinned)")
            let pinTime = Date().timeIntervalSince1970
            try eventually("agent-02's updates land in tier 1", timeout: 60) {
                try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM committedUpdates WHERE clientID = 'agent-02' AND lane = 1 AND receivedAt > ?", arguments: [pinTime]) ?? 0 } >= 1
            }
            let row = try #require(try db.read { try Row.fetchOne($0, sql: "SELECT tier, pinnedTier FROM clients WHERE id = 'agent-02'") })
            #expect(row["tier"] as Int? == 1 && row["pinnedTier"] as Int? == 1)
            #expect(try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM tierMoves WHERE clientID = 'agent-02' AND reason = 'pinned'") } == 1)

            // unpin, then retier: the operator's re-plan puts agent-02 back with the fast agents at once.
            let unpinned = try Self.json(box, adminPort: admin, ["unpin", "agent-02"])
            #expect(unpinned["action"] as? String == "unpin" && unpinned["target"] as? String == "agent-02")
            #expect(try Self.ctl(box, adminPort: admin, ["unpin", "agent-02"]).status == 3)   // not pinned any more
            let retiered = try Self.json(box, adminPort: admin, ["retier"])
            let moves = retiered["moves"] as? [[String: Any]] ?? []
            #expect(moves.contains { $0["client"] as? String == "agent-02" && $0["to"] as? Int == 0 }, "\(retiered)")
            #expect(try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM tierMoves WHERE clientID = 'agent-02' AND reason = 'operator'") } == 1)

            // Refused actions: typed exit statuses, audited too.
            #expect(try Self.ctl(box, adminPort: admin, ["pin", "agent-01", "7"]).status == 3)
            #expect(try Self.ctl(box, adminPort: admin, ["pin", "nobody", "0"]).status == 2)
            #expect(try Self.ctl(box, adminPort: admin, ["client", "nobody"]).status == 2)
            #expect(try Self.ctl(box, adminPort: admin, ["export-model", "999999", "--out", box.file("none.npz")]).status == 2)
            #expect(try Self.ctl(box, adminPort: admin, ["pin"]).status == 64)

            // evict takes effect: the session closes, the agent stops, its certificate is refused until admit.
            let evicted = try Self.json(box, adminPort: admin, ["evict", "agent-03", "--reason", "integration test"])
            #expect(evicted["action"] as? String == "evict" && (evicted["message"] as? String ?? "").contains("session was closed"), "\(evicted)")
            try box.waitForExit(agents["agent-03"]!, timeout: 30)
            #expect(agents["agent-03"]!.terminationStatus != 0)
            let states = try Self.json(box, adminPort: admin, ["clients", "--state", "evicted"])["clients"] as? [[String: Any]] ?? []
            #expect(states.map { $0["id"] as? String } == ["agent-03"])
            #expect((states.first?["eviction"] as? [String: Any])?["reason"] as? String == "integration test")
            let refused = try startAgent("agent-03")
            try box.waitForExit(refused, timeout: 30)
            #expect(refused.terminationStatus != 0)
            let evictionTime = Date().timeIntervalSince1970
            #expect(try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM committedUpdates WHERE clientID = 'agent-03' AND receivedAt > ?", arguments: [evictionTime]) } == 0)
            #expect(try Self.json(box, adminPort: admin, ["admit", "agent-03"])["action"] as? String == "admit")
            agents["agent-03"] = try startAgent("agent-03")
            try eventually("agent-03 trains again after admit", timeout: 60) {
                try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM committedUpdates WHERE clientID = 'agent-03' AND receivedAt > ?", arguments: [evictionTime]) ?? 0 } >= 1
            }

            // audit: every changing action with its actor and result, in the API and in the table.
            let audit = try Self.json(box, adminPort: admin, ["audit", "--limit", "100"])["entries"] as? [[String: Any]] ?? []
            let actions = audit.reversed().map { "\($0["action"] as? String ?? "?"):\($0["target"] as? String ?? "?"):\($0["result"] as? String ?? "?")" }
            #expect(actions == ["pin:agent-02:ok", "unpin:agent-02:ok", "unpin:agent-02:conflict", "retier:tiers:ok", "pin:agent-01:conflict", "pin:nobody:not-found",
                                "evict:agent-03:ok", "admit:agent-03:ok"], "\(actions)")
            #expect(audit.allSatisfy { $0["actor"] as? String == "operator" })
            let table = try db.read { try Row.fetchAll($0, sql: "SELECT actor, action, target, detail, result FROM audit ORDER BY id") }
            #expect(table.count == 8)
            #expect(table.contains { $0["action"] as String == "evict" && $0["detail"] as String == "integration test" && $0["result"] as String == "ok" })

            // watch: a refreshing view; --json gives one object per refresh.
            let watch = try Self.ctlSeparately(box, adminPort: admin, ["watch", "--count", "2", "--interval", "0.2", "--json"])
            #expect(watch.status == 0, "\(watch.stderr)")
            let frames = watch.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
            #expect(frames.count == 2 && frames.allSatisfy { ($0["status"] as? [String: Any])?["mode"] as? String == "strata" })
            let watchHuman = try Self.ctl(box, adminPort: admin, ["watch", "--count", "1"])
            #expect(watchHuman.output.contains("stratactl watch") && watchHuman.output.contains("CLIENT"))
            #expect(coordinator.isRunning, "\(context())")
        }

        @Test(.timeLimit(.minutes(3)))
        func retentionDropsOldParametersKeepsTheRowsAndExportSaysWhy() throws {
            let box = Sandbox("retention")
            try box.makePKI(agents: 2)
            let data = try box.run(Binaries.path("strata-datagen"), ["--out", box.file("data"), "--clients", "2", "--seed", "3", "--max-samples", "80"])
            try #require(data.status == 0, "\(data.output)")
            let (coordinator, port) = try box.startCoordinator([
                "--mode", "fedbuff", "--buffer-size", "1", "--evaluate-every", "0", "--max-duration", "120",
                "--keep-models", "3", "--keep-every", "5",
            ])
            let admin = try box.endpointPort("admin")
            var agents: [Process] = []
            defer { for agent in agents where agent.isRunning { agent.terminate() } }
            for index in 1...2 {
                let id = String(format: "agent-%02d", index)
                agents.append(try box.start(Binaries.path("strata-agent"), box.agentArguments(port: port, id: id, database: box.file(String(format: "data/client-%02d.sqlite", index))),
                                            log: "\(id).log"))
            }
            try eventually("version 14", timeout: 90) { (try Self.json(box, adminPort: admin, ["status"])["globalVersion"] as? Int ?? 0) >= 14 }

            // One consistent listing: exactly the newest 3, every 5th and version 0 have their parameters.
            let listed = try Self.json(box, adminPort: admin, ["models", "--limit", "1000"])["global"] as? [[String: Any]] ?? []
            let newest = try #require(listed.compactMap { $0["version"] as? Int }.max())
            #expect(listed.count == newest + 1, "every version keeps its row")
            let retention = ModelRetention(latest: 3, every: 5)
            for entry in listed {
                let version = try #require(entry["version"] as? Int)
                #expect(entry["parametersKept"] as? Bool == retention.keeps(Int64(version), newest: Int64(newest)), "version \(version) of \(newest)")
            }
            #expect(try Self.ctl(box, adminPort: admin, ["models", "--limit", "20"]).output.contains("dropped"))

            // A dropped version: not found (exit 2), saying why; a kept one exports.
            let dropped = try Self.ctl(box, adminPort: admin, ["export-model", "1", "--out", box.file("v1.npz")])
            #expect(dropped.status == 2 && dropped.output.contains("--keep-models"), "\(dropped.output)")
            #expect(!FileManager.default.fileExists(atPath: box.file("v1.npz")))
            let kept = try Self.json(box, adminPort: admin, ["export-model", "5", "--out", box.file("v5.npz")])
            #expect(kept["version"] as? Int == 5)
            #expect(coordinator.isRunning)
        }

        @Test(.timeLimit(.minutes(3)))
        func onlyAdminCertificatesOpenTheAdminPortAndOnlyAgentsTheAgentPort() throws {
            let box = Sandbox("admin-refusals")
            try box.makePKI(agents: 1)
            let data = try box.run(Binaries.path("strata-datagen"), ["--out", box.file("data"), "--clients", "1", "--seed", "2", "--max-samples", "60"])
            try #require(data.status == 0)
            let (_, port) = try box.startCoordinator(["--evaluate-every", "0", "--max-duration", "120"])
            let admin = try box.endpointPort("admin")
            let metrics = try box.endpointPort("metrics")

            // An agent's certificate on the admin port: 403, exit status 4, with what to do.
            let asAgent = try Self.ctl(box, adminPort: admin, ["status"], cert: box.file("pki/agents/agent-01.crt"), key: box.file("pki/agents/agent-01.key"))
            #expect(asAgent.status == 4)
            #expect(asAgent.output.contains("admits admin certificates"), "\(asAgent.output)")

            // No certificate at all: the TLS handshake is refused and no HTTP answer comes back.
            let bare = try box.run("/usr/bin/env", ["bash", "-c",
                "printf 'GET /v1/status HTTP/1.1\\r\\nHost: localhost\\r\\nConnection: close\\r\\n\\r\\n' | "
                + "openssl s_client -quiet -connect 127.0.0.1:\(admin) -tls1_3 -CAfile \(box.file("pki/ca.crt")) -servername localhost 2>&1"])
            #expect(!bare.output.contains("HTTP/1.1"), "\(bare.output)")
            #expect(!bare.output.contains("globalVersion"))

            // An admin certificate on the agent port: the agent program is refused and stops.
            let asAdmin = try box.run(Binaries.path("strata-agent"), box.agentArguments(
                port: port, id: "operator", cert: box.file("pki/admins/operator.crt"), key: box.file("pki/admins/operator.key"),
                database: box.file("data/client-01.sqlite")), timeout: 60)
            #expect(asAdmin.status != 0)
            #expect(asAdmin.output.contains("admits agent certificates"), "\(asAdmin.output)")

            // Malformed requests with an admin certificate: typed JSON errors, nothing changes.
            func rawAdmin(_ request: String) throws -> String {
                let file = box.file("request-\(UUID().uuidString.prefix(6)).txt")
                try request.write(toFile: file, atomically: true, encoding: .utf8)
                return try box.run("/usr/bin/env", ["bash", "-c",
                    "openssl s_client -quiet -ign_eof -connect 127.0.0.1:\(admin) -tls1_3 -CAfile \(box.file("pki/ca.crt")) "
                    + "-cert \(box.file("pki/admins/operator.crt")) -key \(box.file("pki/admins/operator.key")) -servername localhost < \(file) 2>/dev/null"]).output
            }
            func post(_ path: String, _ body: String) -> String {
                "POST \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)"
            }
            let badJSON = try rawAdmin(post("/v1/clients/agent-01/pin", "{not json"))
            #expect(badJSON.hasPrefix("HTTP/1.1 400") && badJSON.contains("\"error\":\"bad-request\""), "\(badJSON)")
            let oversized = try rawAdmin(post("/v1/clients/agent-01/evict", "{\"reason\":\"" + String(repeating: "x", count: 70_000) + "\"}"))
            #expect(oversized.hasPrefix("HTTP/1.1 413"), "\(oversized.prefix(300))")
            let badVersion = try rawAdmin("GET /v1/models/abc HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            #expect(badVersion.hasPrefix("HTTP/1.1 400") && badVersion.contains("must be an integer"), "\(badVersion)")
            let unknown = try rawAdmin("GET /v2/status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            #expect(unknown.hasPrefix("HTTP/1.1 404") && unknown.contains("\"error\":\"not-found\""), "\(unknown)")
            let db = try DatabaseQueue(path: box.file("coordinator.sqlite"))
            #expect(try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM clients WHERE pinnedTier IS NOT NULL OR evictedAt IS NOT NULL") } == 0)

            // Each refusal is counted by endpoint and reason.
            let text = try httpGet(port: metrics, path: "/metrics").body
            let samples = try PrometheusText.parse(text)
            #expect(samples.value("strata_tls_handshake_failures_total", ["endpoint": "admin", "reason": "wrong-role"]) == 1)
            #expect((samples.value("strata_tls_handshake_failures_total", ["endpoint": "admin", "reason": "no-certificate"]) ?? 0)
                    + (samples.value("strata_tls_handshake_failures_total", ["endpoint": "admin", "reason": "handshake-failed"]) ?? 0) >= 1, "\(text)")
            #expect(samples.value("strata_tls_handshake_failures_total", ["endpoint": "agents", "reason": "wrong-role"]) == 1)
        }
    }
}

/// One plain-HTTP GET on loopback (the metrics endpoint); reads until the server closes.
func httpGet(port: Int, path: String) throws -> (status: Int, body: String) {
    let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
    defer { try? group.syncShutdownGracefully() }
    let collected = try ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port).flatMap { channel -> EventLoopFuture<ByteBuffer> in
        let collector = ResponseCollector(promise: channel.eventLoop.makePromise())
        return channel.pipeline.addHandler(collector).flatMap {
            channel.writeAndFlush(ByteBuffer(string: "GET \(path) HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
        }.flatMap { collector.promise.futureResult }
    }.wait()
    let text = String(buffer: collected)
    guard let split = text.range(of: "\r\n\r\n") else { throw HarnessError.exited("no HTTP answer: \(text)") }
    let statusLine = text[..<split.lowerBound].split(separator: "\r\n").first ?? ""
    let status = Int(statusLine.split(separator: " ").dropFirst().first ?? "") ?? 0
    return (status, String(text[split.upperBound...]))
}

private final class ResponseCollector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let promise: EventLoopPromise<ByteBuffer>
    private var received = ByteBuffer()
    init(promise: EventLoopPromise<ByteBuffer>) { self.promise = promise }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var chunk = unwrapInboundIn(data)
        received.writeBuffer(&chunk)
    }
    func channelInactive(context: ChannelHandlerContext) { promise.succeed(received) }
    func errorCaught(context: ChannelHandlerContext, error: any Error) { promise.fail(error) }
}
