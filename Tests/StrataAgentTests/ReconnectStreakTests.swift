import Testing
@testable import StrataAgent

/// The reconnect backoff counts consecutive failures only: a session the coordinator welcomed ends the
/// streak (found by Deploy/chaos.py: after a few coordinator restarts every agent waited up to 10 s to come
/// back, and an agent with --max-connect-attempts N gave up after its N-th outage).
@Suite struct ReconnectStreakTests {
    @Test func failuresWithoutWelcomeAccumulate() {
        var streak = ReconnectStreak()
        #expect((1...4).map { _ in streak.failed(afterWelcome: false) } == [1, 2, 3, 4])
        #expect(Backoff().delay(attempt: 4, random: 1) == .milliseconds(1600))
    }

    @Test func aWelcomedSessionStartsTheNextOutageAtTheFirstStep() {
        var streak = ReconnectStreak()
        // Outage 1: the session is lost, two attempts are refused, the third is welcomed.
        #expect(streak.failed(afterWelcome: true) == 1)
        #expect(streak.failed(afterWelcome: false) == 2)
        #expect(streak.failed(afterWelcome: false) == 3)
        // That session is lost later: outage 2 backs off from 200 ms again, not from 1.6 s.
        for outage in 2...6 {
            #expect(streak.failed(afterWelcome: true) == 1, "outage \(outage)")
            #expect(streak.failed(afterWelcome: false) == 2)
        }
        #expect(Backoff().delay(attempt: 1, random: 1) == .milliseconds(200))
    }

    @Test func aGoodbyeEndsTheStreak() {
        var streak = ReconnectStreak()
        _ = streak.failed(afterWelcome: false)
        _ = streak.failed(afterWelcome: false)
        streak.ended()
        #expect(streak.failures == 0)
        #expect(streak.failed(afterWelcome: false) == 1)
    }
}
