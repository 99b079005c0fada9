import Foundation
import GRDB
import Testing

/// Certificates on a live federation: revocation (at startup, after SIGHUP, after the CRL file changes), what an
/// agent says when the coordinator refuses its certificate, and the read-only viewer role on the admin port.
extension IntegrationSuite {
    @Suite(.serialized) struct CertificateTests {
        static func pki(_ box: Sandbox, _ arguments: [String]) throws {
            let result = try box.run("/bin/bash", [Binaries.repoRoot + "/Certs/strata-pki.sh", "--dir", box.file("pki")] + arguments)
            try #require(result.status == 0, "strata-pki.sh \(arguments): \(result.output)")
        }

        /// Runs the real agent until it exits (it must: a refused certificate is fatal) and returns status and output.
        static func runAgent(_ box: Sandbox, port: Int, id: String, cert: String? = nil, key: String? = nil) throws -> (status: Int32, output: String) {
            try box.run(Binaries.path("strata-agent"), box.agentArguments(port: port, id: id, cert: cert, key: key,
                                                                          database: box.file("data/client-01.sqlite"),
                                                                          extra: ["--max-connect-attempts", "3"]), timeout: 60)
        }

        @Test(.timeLimit(.minutes(4)))
        func revokedCertificatesAreRefusedAtStartupAfterSIGHUPAndAfterTheFileChanges() throws {
            let box = Sandbox("crl")
            try box.makePKI(agents: 3)
            try Self.pki(box, ["revoke", "agent-03"])   // writes pki/crl.pem listing agent-03
            let data = try box.run(Binaries.path("strata-datagen"), ["--out", box.file("data"), "--clients", "1", "--seed", "2", "--max-samples", "60"])
            try #require(data.status == 0, "\(data.output)")
            let (coordinator, port) = try box.startCoordinator(["--evaluate-every", "0", "--max-duration", "200", "--crl", box.file("pki/crl.pem")])
            let admin = try box.endpointPort("admin")
            let metrics = try box.endpointPort("metrics")
            let log = { box.read("coordinator.log") }
            #expect(log().contains("revocation list loaded"), "\(log())")

            // Revoked before the coordinator started: refused at the handshake, and the agent says why and stops.
            let revoked = try Self.runAgent(box, port: port, id: "agent-03")
            #expect(revoked.status == 1, "\(revoked.output)")
            #expect(revoked.output.contains("the coordinator refused this agent's certificate"), "\(revoked.output)")
            #expect(revoked.output.contains("certificate_revoked") && revoked.output.contains("revoked by the federation operator"), "\(revoked.output)")
            #expect(!revoked.output.contains("I/O on closed channel"), "\(revoked.output)")
            try eventually("the coordinator logs the revoked certificate", timeout: 10) { log().contains("peer certificate is revoked") }

            // agent-01 is admitted; after `revoke` + SIGHUP it is refused when it connects again.
            let agent = try box.start(Binaries.path("strata-agent"), box.agentArguments(port: port, id: "agent-01", database: box.file("data/client-01.sqlite")),
                                      log: "agent-01.log")
            let db = try DatabaseQueue(path: box.file("coordinator.sqlite"))
            try eventually("agent-01 admitted", timeout: 30) {
                try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM clients WHERE id = 'agent-01'") } == 1
            }
            agent.terminate()
            try box.waitForExit(agent, timeout: 30)
            try Self.pki(box, ["revoke", "agent-01"])
            kill(coordinator.processIdentifier, SIGHUP)
            try eventually("the CRL reloaded on SIGHUP", timeout: 10) { log().contains("trigger=SIGHUP") || log().contains("\"trigger\":\"SIGHUP\"") }
            let again = try Self.runAgent(box, port: port, id: "agent-01")
            #expect(again.status == 1 && again.output.contains("certificate_revoked"), "\(again.output)")

            // The file changing is enough (no signal): the admin certificate revoked now closes the admin port to it.
            #expect(try AdminTests.ctl(box, adminPort: admin, ["status"]).status == 0)
            try Self.pki(box, ["revoke", "operator"])
            try eventually("the CRL reloaded after the file changed", timeout: 15) { log().contains("file changed") }
            let ctl = try AdminTests.ctl(box, adminPort: admin, ["status"])
            #expect(ctl.status == 4 && ctl.output.contains("refused the certificate") && ctl.output.contains("certificate_revoked"), "\(ctl.output)")

            // A file that cannot be parsed is refused; the revoking list stays in force.
            try "garbage\n".write(toFile: box.file("pki/crl.pem"), atomically: true, encoding: .utf8)
            try eventually("the failed reload is logged", timeout: 15) { log().contains("revocation list reload failed") }
            #expect(try Self.runAgent(box, port: port, id: "agent-01").status == 1)
            #expect(try Self.runAgent(box, port: port, id: "agent-03").output.contains("certificate_revoked"))

            let samples = try PrometheusText.parse(try httpGet(port: metrics, path: "/metrics").body)
            #expect((samples.value("strata_tls_handshake_failures_total", ["endpoint": "agents", "reason": "revoked"]) ?? 0) >= 3)
            #expect((samples.value("strata_tls_handshake_failures_total", ["endpoint": "admin", "reason": "revoked"]) ?? 0) >= 1)
            #expect(coordinator.isRunning, "\(log().suffix(3000))")
        }

        @Test(.timeLimit(.minutes(3)))
        func anAgentFromAnotherCASaysTheCoordinatorRefusedItsCertificate() throws {
            let box = Sandbox("other-ca")
            try box.makePKI(agents: 1)
            for arguments in [["ca"], ["agent", "intruder"]] {
                let result = try box.run("/bin/bash", [Binaries.repoRoot + "/Certs/strata-pki.sh", "--dir", box.file("other")] + arguments)
                try #require(result.status == 0, "\(result.output)")
            }
            let data = try box.run(Binaries.path("strata-datagen"), ["--out", box.file("data"), "--clients", "1", "--seed", "2", "--max-samples", "60"])
            try #require(data.status == 0)
            let (coordinator, port) = try box.startCoordinator(["--evaluate-every", "0", "--max-duration", "120"])
            let intruder = try Self.runAgent(box, port: port, id: "intruder", cert: box.file("other/agents/intruder.crt"), key: box.file("other/agents/intruder.key"))
            #expect(intruder.status == 1, "\(intruder.output)")
            #expect(intruder.output.contains("the coordinator refused this agent's certificate"), "\(intruder.output)")
            #expect(intruder.output.contains("unknown_ca") && intruder.output.contains("not issued by the CA the peer trusts"), "\(intruder.output)")
            #expect(intruder.output.contains("openssl verify"), "\(intruder.output)")   // what to do next
            #expect(!intruder.output.contains("I/O on closed channel"), "\(intruder.output)")
            #expect(coordinator.isRunning)
        }

        @Test(.timeLimit(.minutes(3)))
        func aViewerReadsButCannotChangeAnything() throws {
            let box = Sandbox("viewer")
            try box.makePKI(agents: 1)
            try Self.pki(box, ["viewer", "auditor"])
            let data = try box.run(Binaries.path("strata-datagen"), ["--out", box.file("data"), "--clients", "1", "--seed", "2", "--max-samples", "60"])
            try #require(data.status == 0)
            let (coordinator, port) = try box.startCoordinator(["--evaluate-every", "0", "--max-duration", "120"])
            let admin = try box.endpointPort("admin")
            let agent = try box.start(Binaries.path("strata-agent"), box.agentArguments(port: port, id: "agent-01", database: box.file("data/client-01.sqlite")),
                                      log: "agent-01.log")
            defer { if agent.isRunning { agent.terminate() } }
            let db = try DatabaseQueue(path: box.file("coordinator.sqlite"))
            try eventually("agent-01 admitted", timeout: 30) {
                try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM clients WHERE id = 'agent-01'") } == 1
            }
            let cert = box.file("pki/viewers/auditor.crt"), key = box.file("pki/viewers/auditor.key")
            func viewer(_ arguments: [String]) throws -> (status: Int32, output: String) {
                try AdminTests.ctl(box, adminPort: admin, arguments, cert: cert, key: key)
            }
            // Every read route answers.
            for read in [["status"], ["tiers"], ["clients"], ["client", "agent-01"], ["models"], ["audit"]] {
                let result = try viewer(read)
                #expect(result.status == 0, "stratactl \(read): \(result.output)")
            }
            #expect(try viewer(["status"]).output.contains("mode"))
            // Every changing route: 403, exit status 4, saying why and what to do; nothing changes; audited.
            for action in [["evict", "agent-01", "--reason", "test"], ["pin", "agent-01", "0"], ["unpin", "agent-01"], ["admit", "agent-01"], ["retier"]] {
                let result = try viewer(action)
                #expect(result.status == 4, "stratactl \(action): \(result.output)")
                #expect(result.output.contains("read-only viewer certificate") && result.output.contains("strata-pki.sh admin"), "\(result.output)")
            }
            #expect(try db.read { try Int.fetchOne($0, sql: "SELECT COUNT(*) FROM clients WHERE pinnedTier IS NOT NULL OR evictedAt IS NOT NULL") } == 0)
            #expect(agent.isRunning, "evict must not have reached the agent")
            let audit = try db.read { try Row.fetchAll($0, sql: "SELECT actor, action, target, result FROM audit ORDER BY id") }
            #expect(audit.map { "\($0["actor"] as String):\($0["action"] as String):\($0["target"] as String):\($0["result"] as String)" }
                    == ["auditor:evict:agent-01:forbidden", "auditor:pin:agent-01:forbidden", "auditor:unpin:agent-01:forbidden",
                        "auditor:admit:agent-01:forbidden", "auditor:retier:tiers:forbidden"], "\(audit)")
            // The admin certificate still acts; the viewer certificate still opens nothing on the agent port.
            #expect(try AdminTests.ctl(box, adminPort: admin, ["pin", "agent-01", "0"]).status != 4)
            let asAgent = try Self.runAgent(box, port: port, id: "auditor", cert: cert, key: key)
            #expect(asAgent.status != 0 && asAgent.output.contains("admits agent certificates"), "\(asAgent.output)")
            #expect(coordinator.isRunning)
        }
    }
}
