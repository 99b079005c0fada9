import Testing
@testable import StrataCore

@Suite struct FailureDetectorTests {
    let policy = HealthPolicy(suspectAfter: 3, lostAfter: 10)

    @Test func aClientThatHeartbeatsForAnHourIsNeverSuspect() {
        var detector = FailureDetector(policy: policy)
        #expect(detector.connected("a", at: 0) == HealthTransition(clientID: "a", from: nil, to: .healthy, reason: "joined", at: 0))
        // Heartbeats every second while it trains for an hour: no transition at any check.
        var t = 0.0
        while t < 3600 {
            t += 1
            #expect(detector.heard("a", at: t) == nil)
            #expect(detector.evaluate(at: t + 0.5).isEmpty)
        }
        #expect(detector.clients["a"]?.state == .healthy)
    }

    @Test func silenceMakesSuspectThenLostAndAFrameHeals() {
        var detector = FailureDetector(policy: policy)
        _ = detector.connected("a", at: 0)
        #expect(detector.evaluate(at: 2.9).isEmpty)
        let suspect = detector.evaluate(at: 3)
        #expect(suspect.map(\.to) == [.suspect] && suspect.first?.from == .healthy)
        #expect(suspect.first?.reason.contains("nothing received") == true)
        #expect(detector.evaluate(at: 5).isEmpty, "no repeated transition while the state holds")
        #expect(detector.heard("a", at: 0) == nil, "the same old frame reported again does not heal")
        #expect(detector.clients["a"]?.state == .suspect)
        #expect(detector.heard("a", at: 6)?.to == .healthy)
        #expect(detector.evaluate(at: 15.9).map(\.to) == [.suspect])
        let lost = detector.evaluate(at: 16)
        #expect(lost.map(\.to) == [.lost] && lost.first?.from == .suspect)
        #expect(detector.clients["a"]?.since == 16)
    }

    @Test func aDisconnectedClientIsSuspectThenLostUnlessItReconnects() {
        var detector = FailureDetector(policy: policy)
        _ = detector.connected("a", at: 0)
        _ = detector.connected("b", at: 0)
        let gone = detector.disconnected("a", reason: "connection reset", at: 1)
        #expect(gone?.to == .suspect && gone?.reason == "disconnected: connection reset")
        _ = detector.disconnected("b", reason: "eof", at: 1)
        #expect(detector.connected("b", at: 4)?.reason == "reconnected")
        #expect(detector.heard("b", at: 10.5) == nil)
        let lost = detector.evaluate(at: 11)
        #expect(lost.map(\.clientID) == ["a"] && lost.first?.to == .lost)
        #expect(lost.first?.reason.contains("disconnected for") == true)
        #expect(detector.clients["b"]?.state == .healthy)
        // A lost client that comes back is healthy again.
        #expect(detector.connected("a", at: 20)?.to == .healthy)
    }

    @Test func restoredClientsCountTheirSilenceFromTheRestart() {
        var detector = FailureDetector(policy: policy)
        detector.restore("a", state: .suspect, since: 100, reason: "coordinator restarted", lastHeard: 100)
        #expect(detector.evaluate(at: 109).isEmpty)
        #expect(detector.evaluate(at: 110).map(\.to) == [.lost])
        detector.remove("a")
        #expect(detector.clients.isEmpty)
    }

    @Test func policyValidation() {
        #expect(throws: StrataCoreError.self) { try HealthPolicy(suspectAfter: 0, lostAfter: 5).validate() }
        #expect(throws: StrataCoreError.self) { try HealthPolicy(suspectAfter: 5, lostAfter: 5).validate() }
        #expect(throws: Never.self) { try HealthPolicy(suspectAfter: 3, lostAfter: 10).validate() }
    }
}
