import NIOConcurrencyHelpers
import NIOCore

/// The accounting of a global budget for frames being received: pure, no locks, no I/O.
///
/// A connection asks for the whole size of a large frame before it buffers more than its start; the
/// request is granted while the reservations fit the capacity, otherwise it waits in FIFO order (a large
/// request is never starved by smaller ones that arrive after it). Releasing a reservation (the frame was
/// decoded, or its connection closed) grants waiting requests from the front while they fit.
public struct FrameBudgetLedger: Sendable {
    public enum Outcome: Sendable, Hashable {
        case granted
        case queued
        /// Larger than the whole budget: it could never be granted.
        case tooLarge
    }

    public let capacity: Int
    public private(set) var reserved = 0
    /// The highest `reserved` ever reached.
    public private(set) var peak = 0
    private var holders: [UInt64: Int] = [:]
    private var queue: [(id: UInt64, bytes: Int)] = []

    public init(capacity: Int) {
        precondition(capacity > 0, "a frame budget needs a positive capacity")
        self.capacity = capacity
    }

    public var waiting: Int { queue.count }
    public var holderCount: Int { holders.count }
    public func holds(_ id: UInt64) -> Bool { holders[id] != nil }
    public func isWaiting(_ id: UInt64) -> Bool { queue.contains { $0.id == id } }

    /// One request per id at a time: a second request by a holder or a waiter changes nothing and reports its state.
    public mutating func request(_ id: UInt64, bytes: Int) -> Outcome {
        if holders[id] != nil { return .granted }
        if isWaiting(id) { return .queued }
        guard bytes <= capacity else { return .tooLarge }
        let bytes = max(bytes, 0)
        if queue.isEmpty, reserved + bytes <= capacity {
            grant(id, bytes)
            return .granted
        }
        queue.append((id, bytes))
        return .queued
    }

    /// Frees what `id` holds or withdraws its waiting request; returns the ids granted as a result, in order.
    @discardableResult
    public mutating func release(_ id: UInt64) -> [UInt64] {
        if let bytes = holders.removeValue(forKey: id) {
            reserved -= bytes
        } else if let index = queue.firstIndex(where: { $0.id == id }) {
            queue.remove(at: index)
        } else {
            return []
        }
        return grantWaiting()
    }

    /// Moves everything `id` holds onto `holder`'s account (added to what it holds): a reservation that
    /// outlives its frame, e.g. while the decoded message waits to be handled. Returns the bytes moved.
    public mutating func transfer(_ id: UInt64, to holder: UInt64) -> Int {
        guard id != holder, let bytes = holders.removeValue(forKey: id) else { return 0 }
        holders[holder, default: 0] += bytes
        return bytes
    }

    /// Frees `bytes` of what `id` holds (at most all of it); returns the ids granted as a result, in order.
    @discardableResult
    public mutating func release(_ id: UInt64, bytes: Int) -> [UInt64] {
        guard let held = holders[id], bytes > 0 else { return [] }
        let freed = min(held, bytes)
        if freed == held { holders[id] = nil } else { holders[id] = held - freed }
        reserved -= freed
        return grantWaiting()
    }

    private mutating func grantWaiting() -> [UInt64] {
        var granted: [UInt64] = []
        while let first = queue.first, reserved + first.bytes <= capacity {
            queue.removeFirst()
            grant(first.id, first.bytes)
            granted.append(first.id)
        }
        return granted
    }

    private mutating func grant(_ id: UInt64, _ bytes: Int) {
        holders[id] = bytes
        reserved += bytes
        peak = max(peak, reserved)
    }
}

/// The process-wide budget for frames being received, shared by every connection (thread-safe).
/// Frames of at least `threshold` bytes reserve their full size before they are buffered beyond their
/// start (`FrameBudgetGate`); smaller frames never wait. `capacity` bounds the memory that partially
/// received large frames hold across all connections, whatever their peers announce or trickle.
public final class FrameBudget: Sendable {
    public struct Snapshot: Sendable, Hashable {
        public var capacity: Int
        public var reserved: Int
        public var peak: Int
        public var holders: Int
        public var waiting: Int
        /// Requests that had to wait, since start.
        public var waitsStarted: Int
    }

    public let capacity: Int
    public let threshold: Int
    private let state: NIOLockedValueBox<State>
    private let onChange: (@Sendable (Snapshot) -> Void)?

    private struct State {
        var ledger: FrameBudgetLedger
        var wakeups: [UInt64: @Sendable () -> Void] = [:]
        var nextID: UInt64 = 0
        var waitsStarted = 0
        var snapshot: Snapshot {
            Snapshot(capacity: ledger.capacity, reserved: ledger.reserved, peak: ledger.peak, holders: ledger.holderCount,
                     waiting: ledger.waiting, waitsStarted: waitsStarted)
        }
    }

    /// Frames below this many bytes are not accounted (they are bounded per connection by it).
    public static let defaultThreshold = 256 * 1024

    /// - Parameter onChange: called (outside the lock) after every change, e.g. to export gauges.
    public init(capacity: Int, threshold: Int = FrameBudget.defaultThreshold, onChange: (@Sendable (Snapshot) -> Void)? = nil) {
        self.capacity = capacity
        self.threshold = threshold
        self.onChange = onChange
        state = NIOLockedValueBox(State(ledger: FrameBudgetLedger(capacity: capacity)))
    }

    public var snapshot: Snapshot { state.withLockedValue { $0.snapshot } }

    func makeID() -> UInt64 {
        state.withLockedValue { s in
            s.nextID += 1
            return s.nextID
        }
    }

    /// Asks for `bytes`; when the answer is `.queued`, `onGranted` is called (on any thread, once) when the
    /// reservation is granted later, unless `release(id)` withdrew it first.
    func request(_ id: UInt64, bytes: Int, onGranted: @escaping @Sendable () -> Void) -> FrameBudgetLedger.Outcome {
        let (outcome, snapshot) = state.withLockedValue { s -> (FrameBudgetLedger.Outcome, Snapshot) in
            let wasWaiting = s.ledger.isWaiting(id)
            let outcome = s.ledger.request(id, bytes: bytes)
            if outcome == .queued, !wasWaiting {
                s.wakeups[id] = onGranted
                s.waitsStarted += 1
            }
            return (outcome, s.snapshot)
        }
        onChange?(snapshot)
        return outcome
    }

    func holds(_ id: UInt64) -> Bool { state.withLockedValue { $0.ledger.holds(id) } }

    /// Frees `id`'s reservation or withdraws its waiting request, and wakes the requests this grants.
    func release(_ id: UInt64) {
        let (wakeups, snapshot) = state.withLockedValue { s -> ([@Sendable () -> Void], Snapshot) in
            s.wakeups[id] = nil
            let granted = s.ledger.release(id)
            return (granted.compactMap { s.wakeups.removeValue(forKey: $0) }, s.snapshot)
        }
        onChange?(snapshot)
        for wake in wakeups { wake() }
    }

    /// Moves `id`'s reservation onto `holder`'s account; returns the bytes moved (0 if `id` held none).
    func transfer(_ id: UInt64, to holder: UInt64) -> Int {
        state.withLockedValue { $0.ledger.transfer(id, to: holder) }
    }

    /// Frees `bytes` of `id`'s reservation and wakes the requests this grants.
    func release(_ id: UInt64, bytes: Int) {
        let (wakeups, snapshot) = state.withLockedValue { s -> ([@Sendable () -> Void], Snapshot) in
            let granted = s.ledger.release(id, bytes: bytes)
            return (granted.compactMap { s.wakeups.removeValue(forKey: $0) }, s.snapshot)
        }
        onChange?(snapshot)
        for wake in wakeups { wake() }
    }
}

/// One connection's account with a `FrameBudget`, and the back-pressure that enforces it: while a large
/// frame waits for its reservation, the `read()`s that would pull more of it from the socket are held
/// here, so the frame cannot grow in memory (its start, at most a read cycle's plaintext, stays in the
/// decoder's buffer). The decoder (`MessageDecoder`) asks `admit(frameBytes:)` and reports
/// `frameCompleted()` when it hands the decoded message on; closing the connection frees whatever it held.
///
/// With `holdUntilHandled`, a message's reservation is not freed when it is decoded but when its consumer
/// reports `messageHandled()` (once per message, in order): the budget then bounds the large messages that
/// are received *or* waiting to be handled, not only those in transit. Without it, N connections whose
/// decoded 400-MB updates wait for a busy consumer would hold N models outside the budget.
///
/// Place it between the TLS handler and the `ByteToMessageHandler` of the decoder. Event-loop confined.
public final class FrameBudgetGate: ChannelDuplexHandler, RemovableChannelHandler {
    public typealias InboundIn = ByteBuffer
    public typealias InboundOut = ByteBuffer
    public typealias OutboundIn = ByteBuffer
    public typealias OutboundOut = ByteBuffer

    public let budget: FrameBudget
    private let id: UInt64
    private var context: ChannelHandlerContext?
    /// The frame size this connection asked for (granted or waiting).
    private var requested: Int?
    private var heldRead = false
    private var closed = false
    /// The account that holds the reservations of messages handed on but not yet handled (`holdUntilHandled`).
    private let handedOnID: UInt64?
    /// Bytes reserved by each message handed on and not yet handled, oldest first (0: it reserved nothing).
    private var handedOn: [Int] = []

    public init(budget: FrameBudget, holdUntilHandled: Bool = false) {
        self.budget = budget
        id = budget.makeID()
        handedOnID = holdUntilHandled ? budget.makeID() : nil
    }

    /// Messages handed on whose `messageHandled()` has not come yet (`holdUntilHandled` only).
    public var messagesAwaitingHandling: Int { handedOn.count }

    /// Frames of at least this size must be admitted before they are buffered.
    public var threshold: Int { budget.threshold }
    /// True while a frame of this connection waits for budget (reads are held).
    public var isWaiting: Bool { requested != nil && !budget.holds(id) }
    /// True while this connection holds a reservation.
    public var holdsReservation: Bool { requested != nil && budget.holds(id) }

    /// May a frame of `frameBytes` (header included) be buffered in full now? False: it waits, and reads
    /// stop until the budget grants it. Throws `frameTooLarge` if it exceeds the whole budget.
    public func admit(frameBytes: Int) throws -> Bool {
        guard !closed, let context else { return false }
        if let requested {
            if requested == frameBytes { return budget.holds(id) }
            budget.release(id)  // a different frame: cannot happen with sequential frames; stay consistent
            self.requested = nil
        }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        let loop = context.eventLoop
        switch budget.request(id, bytes: frameBytes, onGranted: { loop.execute { bound.value.granted() } }) {
        case .granted:
            requested = frameBytes
            return true
        case .queued:
            requested = frameBytes
            return false
        case .tooLarge:
            throw WireError.frameTooLarge(length: frameBytes - FrameHeader.size, limit: budget.capacity - FrameHeader.size)
        }
    }

    /// The frame (or last part) at the head of the stream was decoded and its message handed on: its
    /// reservation (if any) is free, or with `holdUntilHandled` moves to the handed-on account until
    /// `messageHandled()`.
    public func frameCompleted() {
        guard let handedOnID else {
            guard requested != nil else { return }
            requested = nil
            budget.release(id)
            return
        }
        guard !closed else { return }
        var bytes = 0
        if requested != nil {
            requested = nil
            bytes = budget.transfer(id, to: handedOnID)
            if bytes == 0 { budget.release(id) }   // it was still waiting: withdraw the request
        }
        handedOn.append(bytes)
    }

    /// The consumer finished with the oldest message handed on (`holdUntilHandled`): its reservation is free.
    /// Once per message, in the order they were handed on; extra calls change nothing.
    public func messageHandled() {
        guard let handedOnID, !closed, !handedOn.isEmpty else { return }
        let bytes = handedOn.removeFirst()
        if bytes > 0 { budget.release(handedOnID, bytes: bytes) }
    }

    private func granted() {
        guard !closed, requested != nil, heldRead, let context else { return }
        heldRead = false
        context.read()
    }

    private func close() {
        guard !closed else { return }
        closed = true
        if requested != nil {
            requested = nil
            budget.release(id)
        }
        if let handedOnID {
            handedOn.removeAll()
            budget.release(handedOnID)
        }
    }

    public func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    public func handlerRemoved(context: ChannelHandlerContext) {
        close()
        self.context = nil
    }

    public func channelInactive(context: ChannelHandlerContext) {
        close()
        context.fireChannelInactive()
    }

    public func read(context: ChannelHandlerContext) {
        if !closed, requested != nil, !budget.holds(id) {
            heldRead = true
            return
        }
        context.read()
    }
}
