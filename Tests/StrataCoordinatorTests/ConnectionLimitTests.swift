import Testing
@testable import StrataCoordinator

@Suite struct ConnectionLimitTests {
    func counter(unauthenticated: Int = 3, perClient: Int = 2) -> ConnectionCounter {
        var settings = ConnectionLimitSettings()
        settings.maxUnauthenticated = unauthenticated
        settings.maxPerClient = perClient
        return ConnectionCounter(settings: settings)
    }

    @Test func handshakesInProgressAreCappedAndABurstReportsItsPeakWhenOver() {
        var c = counter()
        let accepted = [c.accept(), c.accept(), c.accept(), c.accept()]
        #expect(accepted == [true, true, true, false])
        #expect(c.unauthenticated == 3)
        let ends1 = c.handshakeEnded()
        #expect(ends1 == nil)
        let again = c.accept()
        #expect(again, "room again")
        let ends2 = [c.handshakeEnded(), c.handshakeEnded(), c.handshakeEnded(), c.handshakeEnded()]
        #expect(ends2 == [nil, nil, 3, nil], "the last handshake of the burst reports its peak, and the count never goes below zero")
        #expect(c.unauthenticated == 0)
        let next = [c.accept() ? 1 : 0, c.handshakeEnded() ?? -1]
        #expect(next == [1, 1], "a new burst starts from zero")
    }

    @Test func connectionsPerClientAreCappedAndFreedOnClose() {
        var c = counter(perClient: 2)
        let first = [c.admit(client: "a"), c.admit(client: "a"), c.admit(client: "a")]
        #expect(first == [true, true, false])
        let other = c.admit(client: "b")
        #expect(other, "another identity has its own allowance")
        c.closed(client: "a")
        let again = c.admit(client: "a")
        #expect(again)
        c.closed(client: "a"); c.closed(client: "a"); c.closed(client: "a")
        c.closed(client: "b")
        #expect(c.perClient.isEmpty, "closed clients leave no entry behind")
    }

    @Test func theDefaultBudgetHoldsFourLargestFrames() {
        let settings = ConnectionLimitSettings()
        #expect(settings.effectiveFrameBudget(maxFrameBytes: 64 << 20) == 4 * ((64 << 20) + 8))
        var explicit = settings
        explicit.frameMemoryBudget = 1 << 30
        #expect(explicit.effectiveFrameBudget(maxFrameBytes: 64 << 20) == 1 << 30)
    }
}
