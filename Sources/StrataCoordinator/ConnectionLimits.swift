import CoreMetrics
import NIOConcurrencyHelpers
import StrataWire

#if canImport(Glibc)
import Glibc
#endif

/// Limits on the agent port's connections, as plain values (flags in strata-coordinator).
public struct ConnectionLimitSettings: Sendable, Hashable {
    /// Connections accepted that have not completed the TLS handshake; more are closed at accept.
    public var maxUnauthenticated: Int = 256
    /// Concurrent connections per certificate identity (CN), counted from the handshake to the close.
    public var maxPerClient: Int = 4
    /// Bytes reserved across all connections for frames being received (nil: 4 × the largest frame).
    public var frameMemoryBudget: Int?
    public init() {}

    /// The budget in effect for frames of at most `maxFrameBytes` payload bytes and messages in parts of at
    /// most `maxMessageBytes`: by default 4 largest frames, and at least one largest message in parts (with
    /// the frame that brings its last part), so that a model larger than a frame is received one at a time.
    public func effectiveFrameBudget(maxFrameBytes: Int, maxMessageBytes: Int = 0) -> Int {
        frameMemoryBudget ?? max(4 * (maxFrameBytes + 8), Self.messageReservation(maxFrameBytes: maxFrameBytes, maxMessageBytes: maxMessageBytes))
    }

    /// What a message in parts reserves from the budget at its first part.
    public static func messageReservation(maxFrameBytes: Int, maxMessageBytes: Int) -> Int {
        maxMessageBytes + 8 + maxFrameBytes
    }

    /// The largest `hello` payload (its fields and its options: the feature names). The first frame on the
    /// agent port must be a hello, so no frame before it may be larger.
    public static let maxHelloPayloadBytes = Hello.maxPayloadBytes
}

/// The counting behind the limits: pure, testable alone.
struct ConnectionCounter: Sendable, Hashable {
    var settings: ConnectionLimitSettings
    private(set) var unauthenticated = 0
    /// The most unauthenticated connections since the last flood ended (see `handshakeEnded`).
    private(set) var unauthenticatedPeak = 0
    private(set) var perClient: [String: Int] = [:]

    init(settings: ConnectionLimitSettings) { self.settings = settings }

    /// A connection was accepted: false if it must be closed at once (too many handshakes in progress).
    mutating func accept() -> Bool {
        guard unauthenticated < settings.maxUnauthenticated else { return false }
        unauthenticated += 1
        unauthenticatedPeak = max(unauthenticatedPeak, unauthenticated)
        return true
    }

    /// The handshake of an accepted connection ended (either way). Returns the peak of the burst that just
    /// ended when no handshake is left in progress, else nil.
    mutating func handshakeEnded() -> Int? {
        guard unauthenticated > 0 else { return nil }
        unauthenticated -= 1
        guard unauthenticated == 0 else { return nil }
        defer { unauthenticatedPeak = 0 }
        return unauthenticatedPeak
    }

    /// An authenticated connection of `client`: false if it already has the most it may have.
    mutating func admit(client: String) -> Bool {
        let open = perClient[client, default: 0]
        guard open < settings.maxPerClient else { return false }
        perClient[client] = open + 1
        return true
    }

    mutating func closed(client: String) {
        guard let open = perClient[client] else { return }
        perClient[client] = open > 1 ? open - 1 : nil
    }
}

/// The agent port's connection limits, shared by its event loops and sessions (thread-safe).
final class ConnectionLimits: Sendable {
    private let counter: NIOLockedValueBox<ConnectionCounter>
    private let metrics: CoordinatorMetrics
    /// A burst of at least this many concurrent handshakes is a flood: once it is over, freed memory is
    /// returned to the system (`Allocator.returnFreeMemory`).
    static let floodThreshold = 64

    init(settings: ConnectionLimitSettings, metrics: CoordinatorMetrics) {
        counter = NIOLockedValueBox(ConnectionCounter(settings: settings))
        self.metrics = metrics
        metrics.connectionsRefused(reason: "unauthenticated-limit").increment(by: 0)
        metrics.connectionsRefused(reason: "per-client-limit").increment(by: 0)
        metrics.gauge("strata_unauthenticated_connections").record(0)
    }

    var settings: ConnectionLimitSettings { counter.withLockedValue { $0.settings } }

    func accept() -> Bool {
        let (admitted, count) = counter.withLockedValue { c in (c.accept(), c.unauthenticated) }
        if admitted {
            metrics.gauge("strata_unauthenticated_connections").record(count)
        } else {
            metrics.connectionsRefused(reason: "unauthenticated-limit").increment()
        }
        return admitted
    }

    /// Returns the peak of a burst of handshakes that just ended (nothing in progress any more).
    func handshakeEnded() -> Int? {
        let (burst, count) = counter.withLockedValue { c in (c.handshakeEnded(), c.unauthenticated) }
        metrics.gauge("strata_unauthenticated_connections").record(count)
        return burst
    }

    func admit(client: String) -> Bool {
        let admitted = counter.withLockedValue { $0.admit(client: client) }
        if !admitted { metrics.connectionsRefused(reason: "per-client-limit").increment() }
        return admitted
    }

    func closed(client: String) {
        counter.withLockedValue { $0.closed(client: client) }
    }

    var unauthenticated: Int { counter.withLockedValue { $0.unauthenticated } }
}

/// The C allocator's hold on freed memory.
enum Allocator {
    /// Returns the free memory of every glibc arena to the system (`malloc_trim(0)`: the heap top and, with
    /// madvise, whole free pages inside the heaps). The coordinator keeps up to 512 MiB of freed heap for
    /// reuse on purpose (`CoordinatorService.tuneAllocator`), which also kept what a connection flood had
    /// used; this is called once a flood is over. Returns false where it is not available.
    @discardableResult
    static func returnFreeMemory() -> Bool {
        #if canImport(Glibc)
        typealias MallocTrim = @convention(c) (Int) -> Int32
        guard let process = dlopen(nil, RTLD_NOW), let symbol = dlsym(process, "malloc_trim") else { return false }
        _ = unsafeBitCast(symbol, to: MallocTrim.self)(0)
        return true
        #else
        return false
        #endif
    }
}

extension CoordinatorMetrics {
    /// `reason`: unauthenticated-limit (too many handshakes in progress) or per-client-limit.
    func connectionsRefused(reason: String) -> CoreMetrics.Counter {
        CoreMetrics.Counter(label: "strata_connections_refused_total", dimensions: [("reason", reason)], factory: factory)
    }

    /// Exports the frame budget's state; `waitsSeen` carries the waits already counted between calls.
    func frameBudgetChanged(_ snapshot: FrameBudget.Snapshot, waitsSeen: NIOLockedValueBox<Int>) {
        gauge("strata_frame_budget_capacity_bytes").record(snapshot.capacity)
        gauge("strata_frame_budget_reserved_bytes").record(snapshot.reserved)
        gauge("strata_frame_budget_peak_bytes").record(snapshot.peak)
        gauge("strata_frame_budget_waiting_connections").record(snapshot.waiting)
        let new = waitsSeen.withLockedValue { seen -> Int in
            defer { seen = max(seen, snapshot.waitsStarted) }
            return max(snapshot.waitsStarted - seen, 0)
        }
        CoreMetrics.Counter(label: "strata_frame_budget_waits_total", factory: factory).increment(by: new)
    }
}

/// The process's resident set size (VmRSS), from /proc; nil where there is none.
enum ResidentMemory {
    static func current() -> Int? {
        #if os(Linux)
        guard let file = fopen("/proc/self/status", "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(cString: line)
            if text.hasPrefix("VmRSS:") {
                let kib = text.dropFirst(6).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.flatMap { Int($0) }
                return kib.map { $0 * 1024 }
            }
        }
        return nil
        #else
        return nil
        #endif
    }
}
