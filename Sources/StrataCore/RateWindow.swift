/// Events per second over a sliding window, in fixed memory: one counter per second of the window.
/// Times are seconds on any monotonic clock; an earlier time than the last one counts into the current second.
public struct RateWindow: Sendable, Hashable {
    public let windowSeconds: Int
    private var counts: [Int64]
    /// The whole second the newest bucket stands for.
    private var newestSecond: Int64 = 0
    private var firstSecond: Int64?

    public init(windowSeconds: Int = 60) {
        precondition(windowSeconds >= 1, "RateWindow needs a window of at least one second")
        self.windowSeconds = windowSeconds
        self.counts = [Int64](repeating: 0, count: windowSeconds)
    }

    public mutating func record(_ count: Int64 = 1, at time: Double) {
        advance(to: time)
        counts[Int(newestSecond.modulo(windowSeconds))] += count
    }

    /// Events per second over the last `windowSeconds` (or since the first event, if that is more recent).
    public mutating func rate(at time: Double) -> Double {
        advance(to: time)
        guard let first = firstSecond else { return 0 }
        let span = min(Int64(windowSeconds), newestSecond - first + 1)
        return Double(counts.reduce(0, +)) / Double(max(1, span))
    }

    private mutating func advance(to time: Double) {
        let second = Int64((time.isFinite ? time : 0).rounded(.down))
        if firstSecond == nil {
            firstSecond = second
            newestSecond = second
            return
        }
        guard second > newestSecond else { return }
        let steps = min(Int64(windowSeconds), second - newestSecond)
        for s in 1...steps { counts[Int((newestSecond + s).modulo(windowSeconds))] = 0 }
        newestSecond = second
    }
}

extension Int64 {
    fileprivate func modulo(_ m: Int) -> Int64 {
        let r = self % Int64(m)
        return r >= 0 ? r : r + Int64(m)
    }
}
