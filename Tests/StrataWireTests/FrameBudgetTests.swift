import NIOCore
import NIOEmbedded
import Testing
@testable import StrataWire

@Suite struct FrameBudgetLedgerTests {
    @Test func grantsWhatFitsQueuesTheRestInOrderAndRefusesTheImpossible() {
        var ledger = FrameBudgetLedger(capacity: 100)
        #expect(ledger.request(1, bytes: 60) == .granted)
        #expect(ledger.request(2, bytes: 50) == .queued)
        // FIFO: a small request does not overtake the waiting large one, though it would fit.
        #expect(ledger.request(3, bytes: 10) == .queued)
        #expect(ledger.request(4, bytes: 101) == .tooLarge)
        #expect(ledger.reserved == 60 && ledger.waiting == 2)
        // Asking again changes nothing.
        #expect(ledger.request(1, bytes: 60) == .granted)
        #expect(ledger.request(2, bytes: 50) == .queued)
        #expect(ledger.reserved == 60 && ledger.waiting == 2)

        #expect(ledger.release(1) == [2, 3])
        #expect(ledger.reserved == 60 && ledger.waiting == 0)
        #expect(ledger.holds(2) && ledger.holds(3) && !ledger.holds(1))
        #expect(ledger.release(99) == [])
        #expect(ledger.peak == 60)
    }

    /// A reservation moved to another account stays reserved; freeing it in pieces grants the waiters it
    /// makes room for, and never frees more than the account holds.
    @Test func aTransferredReservationIsFreedInPieces() {
        var ledger = FrameBudgetLedger(capacity: 100)
        #expect(ledger.request(1, bytes: 60) == .granted)
        #expect(ledger.transfer(1, to: 9) == 60)
        #expect(!ledger.holds(1) && ledger.holds(9) && ledger.reserved == 60)
        #expect(ledger.request(1, bytes: 30) == .granted)
        #expect(ledger.transfer(1, to: 9) == 30, "added to what the account holds")
        #expect(ledger.transfer(1, to: 9) == 0, "nothing left to move")
        #expect(ledger.request(2, bytes: 50) == .queued)
        #expect(ledger.release(9, bytes: 30) == [])
        #expect(ledger.release(9, bytes: 30) == [2])
        #expect(ledger.reserved == 80 && ledger.holds(9))
        #expect(ledger.release(9, bytes: 100) == [], "at most what the account holds")
        #expect(ledger.reserved == 50 && !ledger.holds(9))
        #expect(ledger.release(9, bytes: 10) == [], "an empty account frees nothing")
        #expect(ledger.release(2) == [] && ledger.reserved == 0 && ledger.holderCount == 0)
    }

    @Test func aWithdrawnWaiterUnblocksTheQueueAndNothingLeaks() {
        var ledger = FrameBudgetLedger(capacity: 100)
        #expect(ledger.request(1, bytes: 90) == .granted)
        #expect(ledger.request(2, bytes: 80) == .queued)
        #expect(ledger.request(3, bytes: 10) == .queued)
        // The head of the queue goes away (its connection closed): the next one that fits is granted.
        #expect(ledger.release(2) == [3])
        #expect(ledger.reserved == 100)
        #expect(ledger.release(1) == [] && ledger.release(3) == [])
        #expect(ledger.reserved == 0 && ledger.waiting == 0 && ledger.holderCount == 0)
    }

    /// Many connections asking and releasing in any order: the reservations never exceed the capacity,
    /// and once everything is released nothing is reserved or waiting.
    @Test func neverAboveCapacityUnderRandomTraffic() {
        var ledger = FrameBudgetLedger(capacity: 1_000)
        var rng = SystemRandomNumberGenerator()
        var live = Set<UInt64>()
        for step in 0..<5_000 {
            let id = UInt64.random(in: 1...40, using: &rng)
            if live.contains(id), Bool.random(using: &rng) {
                ledger.release(id)
                live.remove(id)
            } else if !live.contains(id) {
                if ledger.request(id, bytes: Int.random(in: 1...400, using: &rng)) != .tooLarge { live.insert(id) }
            }
            #expect(ledger.reserved <= ledger.capacity, "step \(step)")
        }
        for id in live { ledger.release(id) }
        #expect(ledger.reserved == 0 && ledger.waiting == 0)
    }
}

/// Counts the `read()`s that reach the head of the pipeline (the socket, on a real channel).
final class ReadCounter: ChannelOutboundHandler {
    typealias OutboundIn = ByteBuffer
    var reads = 0
    func read(context: ChannelHandlerContext) {
        reads += 1
        context.read()
    }
}

@Suite struct FrameBudgetGateTests {
    static func largeUpdate(_ floats: Int) -> ByteBuffer {
        WireCodec.encode(.update(Update(taskID: 1, baseVersion: 0, sampleCount: 1, trainLoss: 0, evalSampleCount: 0, evalLoss: 0, evalAccuracy: 0,
                                        trainMillis: 1, delta: [WireTensor(name: "w", shape: [floats], values: [Float](repeating: 1, count: floats))])))
    }

    final class Connection {
        let channel: EmbeddedChannel
        let counter = ReadCounter()
        let gate: FrameBudgetGate
        init(budget: FrameBudget, maxFirst: Int? = nil, holdUntilHandled: Bool = false) throws {
            gate = FrameBudgetGate(budget: budget, holdUntilHandled: holdUntilHandled)
            channel = EmbeddedChannel()
            try channel.pipeline.syncOperations.addHandler(counter)
            try channel.pipeline.syncOperations.addHandler(gate)
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(MessageDecoder(budget: gate, maxFirstPayloadBytes: maxFirst)))
        }
        /// Asks for more data, as the channel's auto-read would; true if the request reached the socket.
        func read() -> Bool {
            let before = counter.reads
            channel.read()
            return counter.reads > before
        }
    }

    /// Eight connections each announce a large frame and send its start: two fit the budget, the others
    /// stop being read until a frame completes or a connection closes; the budget never holds more than its capacity.
    @Test func largeFramesWaitForBudgetWithReadsHeldAndAreWokenInOrder() throws {
        var frame = Self.largeUpdate(100_000)  // ~400 KB: above the 256 KiB threshold
        let size = frame.readableBytes
        let budget = FrameBudget(capacity: 2 * size + 10)
        let connections = try (0..<8).map { _ in try Connection(budget: budget) }
        let start = frame.getSlice(at: frame.readerIndex, length: 4_096)!
        for connection in connections {
            try connection.channel.writeInbound(start)
        }
        #expect(budget.snapshot.reserved == 2 * size)
        #expect(budget.snapshot.waiting == 6)
        #expect(connections.map { $0.gate.holdsReservation } == [true, true, false, false, false, false, false, false])
        // Reads: the admitted connections go on reading, the waiting ones do not.
        #expect(connections.map { $0.read() } == [true, true, false, false, false, false, false, false])

        // The first connection's frame completes: its reservation passes to the third, whose held read goes out.
        let rest = frame.getSlice(at: frame.readerIndex + 4_096, length: size - 4_096)!
        try connections[0].channel.writeInbound(rest)
        #expect(try connections[0].channel.readInbound(as: Message.self) != nil)
        connections[2].channel.embeddedEventLoop.run()
        #expect(connections[2].gate.holdsReservation)
        #expect(connections[2].counter.reads == 1, "the read held while waiting is issued once granted")
        #expect(budget.snapshot.reserved == 2 * size)

        // A waiting connection that closes withdraws; a holder that closes frees its share for the next in line.
        _ = try? connections[5].channel.finish(acceptAlreadyClosed: true)
        _ = try? connections[1].channel.finish(acceptAlreadyClosed: true)
        connections[3].channel.embeddedEventLoop.run()
        #expect(connections[3].gate.holdsReservation)
        #expect(budget.snapshot.waiting == 3)  // 4, 6, 7
        for connection in connections { _ = try? connection.channel.finish(acceptAlreadyClosed: true) }
        #expect(budget.snapshot.reserved == 0 && budget.snapshot.waiting == 0)
        #expect(budget.snapshot.peak <= budget.capacity)
        frame.moveReaderIndex(forwardBy: size)
    }

    /// Held until handled (the coordinator's agent port): a decoded large message keeps its reservation until
    /// its consumer reports it handled, so another connection's large frame waits meanwhile; small messages
    /// count in order without reserving anything, and closing frees what was handed on.
    @Test func aDecodedMessageKeepsItsReservationUntilHandled() throws {
        let frame = Self.largeUpdate(100_000)
        let size = frame.readableBytes
        let budget = FrameBudget(capacity: size + 100)
        let first = try Connection(budget: budget, holdUntilHandled: true)
        let second = try Connection(budget: budget, holdUntilHandled: true)
        // In two reads, as a large frame arrives: a frame decoded from a single read never waited for budget.
        try first.channel.writeInbound(frame.getSlice(at: 0, length: 4_096)!)
        try first.channel.writeInbound(frame.getSlice(at: 4_096, length: size - 4_096)!)
        try first.channel.writeInbound(WireCodec.encode(.heartbeat(Heartbeat(sequence: 1, timestampNanos: 1, isReply: false))))
        #expect(try first.channel.readInbound(as: Message.self) != nil)
        #expect(first.gate.messagesAwaitingHandling == 2)
        #expect(budget.snapshot.reserved == size, "decoded, not yet handled: still reserved")

        try second.channel.writeInbound(frame.getSlice(at: 0, length: 4_096)!)
        #expect(second.gate.isWaiting && !second.read())
        first.gate.messageHandled()   // the large update
        second.channel.embeddedEventLoop.run()
        #expect(second.gate.holdsReservation)
        #expect(first.gate.messagesAwaitingHandling == 1)
        first.gate.messageHandled()   // the heartbeat: reserved nothing
        first.gate.messageHandled()   // one too many: changes nothing
        #expect(budget.snapshot.reserved == size)

        try second.channel.writeInbound(frame.getSlice(at: 4_096, length: size - 4_096)!)
        #expect(try second.channel.readInbound(as: Message.self) != nil)
        #expect(budget.snapshot.reserved == size)
        _ = try? second.channel.finish(acceptAlreadyClosed: true)
        #expect(budget.snapshot.reserved == 0, "a closed connection frees what it handed on")
        _ = try? first.channel.finish(acceptAlreadyClosed: true)
        #expect(budget.snapshot.reserved == 0 && budget.snapshot.waiting == 0)
    }

    /// A slowloris that announces a large frame and then trickles: it holds at most its one reservation, and
    /// the connections after it wait instead of buffering more.
    @Test func aTricklingPeerHoldsOnlyItsOwnReservation() throws {
        let frame = Self.largeUpdate(100_000)
        let size = frame.readableBytes
        let budget = FrameBudget(capacity: size + 100)
        let slow = try Connection(budget: budget)
        try slow.channel.writeInbound(frame.getSlice(at: 0, length: 8)!)
        for offset in stride(from: 8, to: 8 + 64, by: 1) { try slow.channel.writeInbound(frame.getSlice(at: offset, length: 1)!) }
        let next = try Connection(budget: budget)
        try next.channel.writeInbound(frame.getSlice(at: 0, length: 1_024)!)
        #expect(budget.snapshot.reserved == size)
        #expect(next.gate.isWaiting && !next.read())
        _ = try? slow.channel.finish(acceptAlreadyClosed: true)
        next.channel.embeddedEventLoop.run()
        #expect(next.gate.holdsReservation)
        _ = try? next.channel.finish(acceptAlreadyClosed: true)
        #expect(budget.snapshot.reserved == 0)
    }

    @Test func framesAboveTheBudgetAndLargeFirstFramesAreRefused() throws {
        let frame = Self.largeUpdate(100_000)
        let small = FrameBudget(capacity: 300_000)
        let connection = try Connection(budget: small)
        #expect(throws: WireError.self) { try connection.channel.writeInbound(frame.getSlice(at: 0, length: 1_024)!) }
        #expect(small.snapshot.reserved == 0)

        // Before the first frame (a hello on the agent port) only small frames are accepted at all.
        let budget = FrameBudget(capacity: 10 << 20)
        let first = try Connection(budget: budget, maxFirst: 65_561)
        #expect { try first.channel.writeInbound(frame.getSlice(at: 0, length: 8)!) } throws: { error in
            if case WireError.frameTooLarge(_, let limit) = error { return limit == 65_561 }
            return false
        }
        #expect(budget.snapshot.reserved == 0)
        // After a first small frame the full limit applies.
        let second = try Connection(budget: budget, maxFirst: 65_561)
        try second.channel.writeInbound(WireCodec.encode(.heartbeat(Heartbeat(sequence: 1, timestampNanos: 1, isReply: false))))
        _ = try second.channel.readInbound(as: Message.self)
        try second.channel.writeInbound(frame)
        #expect(try second.channel.readInbound(as: Message.self) != nil)
        #expect(budget.snapshot.reserved == 0, "released when the frame completed")
        _ = try? second.channel.finish(acceptAlreadyClosed: true)
    }

    /// Small frames never touch the budget, even when it is spent.
    @Test func smallFramesDoNotWait() throws {
        let frame = Self.largeUpdate(100_000)
        let budget = FrameBudget(capacity: frame.readableBytes)
        let big = try Connection(budget: budget)
        try big.channel.writeInbound(frame.getSlice(at: 0, length: 100)!)
        let other = try Connection(budget: budget)
        try other.channel.writeInbound(Self.largeUpdate(1_000))
        #expect(try other.channel.readInbound(as: Message.self) != nil)
        #expect(other.read())
        _ = try? big.channel.finish(acceptAlreadyClosed: true)
        _ = try? other.channel.finish(acceptAlreadyClosed: true)
    }
}
