/// A flat vector of Float32 values stored as IEEE 754 binary32, little-endian, in one or more contiguous
/// byte segments that follow each other in flat order. The coordinator hands an update's delta to
/// validation and to the aggregation rules in this form, so a delta is read where it lies (the tensors of
/// the received frame) instead of being copied into an array first.
///
/// Segments may have any alignment: every reader here loads with `loadUnaligned`. `[Float]` conforms with
/// one segment (its own storage), so code that has an array passes it as it is.
public protocol Float32Segments: Sendable {
    /// The number of values: the sum of the segments' byte counts divided by 4.
    var count: Int { get }
    /// Calls `body` once per segment, in flat order, with the segment's bytes (a multiple of 4). The
    /// pointer is valid only during the call.
    func forEachSegment(_ body: (UnsafeRawBufferPointer) throws -> Void) rethrows
}

extension Array: Float32Segments where Element == Float {
    public func forEachSegment(_ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        #if _endian(little)
        try withUnsafeBytes { try body($0) }
        #else
        let littleEndian = map { $0.bitPattern.littleEndian }
        try littleEndian.withUnsafeBytes { try body($0) }
        #endif
    }
}

extension Float32Segments {
    /// Calls `body` once per non-empty segment with the flat index of its first value, a pointer to its
    /// bytes (any alignment) and its value count. Traps if the segments do not add up to `count` values
    /// or a segment is not whole values: checked before `body` sees a segment past `count`.
    func forEachRun(_ body: (_ first: Int, _ bytes: UnsafeRawPointer, _ count: Int) throws -> Void) rethrows {
        let total = count
        var first = 0
        try forEachSegment { bytes in
            let n = bytes.count / 4
            precondition(bytes.count == 4 * n && n <= total - first, "Float32Segments: segments do not match count \(total)")
            if n > 0 { try body(first, bytes.baseAddress!, n) }
            first += n
        }
        precondition(first == total, "Float32Segments: segments hold \(first) values, count is \(total)")
    }

    /// Flat index of the first value that is NaN or infinite, or nil.
    public func firstNonFiniteIndex() -> Int? {
        var found: Int?
        forEachRun { first, p, n in
            guard found == nil else { return }
            for i in 0..<n where !Float32LE.load(p, i).isFinite {
                found = first + i
                return
            }
        }
        return found
    }

    /// The values as an array (one copy).
    public func floats() -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { out, initialized in
            forEachRun { first, p, n in
                for i in 0..<n { (out.baseAddress! + first + i).initialize(to: Float32LE.load(p, i)) }
            }
            initialized = count
        }
    }

    /// target[i] += self[i] for every i, in index order. `target.count` must equal `count`.
    func add(into target: UnsafeMutableBufferPointer<Float>) {
        precondition(target.count == count, "add(into:): \(target.count) targets for \(count) values")
        forEachRun { first, p, n in
            let t = target.baseAddress! + first
            for i in 0..<n { t[i] += Float32LE.load(p, i) }
        }
    }
}

/// Little-endian Float32 loads at any alignment.
enum Float32LE {
    /// Value `index` of the little-endian Float32 run starting at `p`.
    @inline(__always)
    static func load(_ p: UnsafeRawPointer, _ index: Int) -> Float {
        Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: index &* 4, as: UInt32.self)))
    }

    /// a[i] += weight · x[i] for i in 0..<n, x read from `p`.
    static func axpy(_ a: UnsafeMutablePointer<Float>, _ p: UnsafeRawPointer, count n: Int, weight: Float) {
        for i in 0..<n { a[i] += weight * load(p, i) }
    }
}

/// Σ x² in Double over eight independent partial sums (so a pass runs at memory speed instead of waiting on
/// one chain of dependent additions), carried across segments. Lane j of a run holds its values j, j+8, …;
/// a run's tail (fewer than 8 values) goes to the first lane.
struct SquareSums {
    private var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, s4 = 0.0, s5 = 0.0, s6 = 0.0, s7 = 0.0

    mutating func add(_ p: UnsafeRawPointer, count n: Int) {
        var s0 = self.s0, s1 = self.s1, s2 = self.s2, s3 = self.s3, s4 = self.s4, s5 = self.s5, s6 = self.s6, s7 = self.s7
        var i = 0
        while i &+ 8 <= n {
            let a0 = Double(Float32LE.load(p, i)), a1 = Double(Float32LE.load(p, i &+ 1))
            let a2 = Double(Float32LE.load(p, i &+ 2)), a3 = Double(Float32LE.load(p, i &+ 3))
            let a4 = Double(Float32LE.load(p, i &+ 4)), a5 = Double(Float32LE.load(p, i &+ 5))
            let a6 = Double(Float32LE.load(p, i &+ 6)), a7 = Double(Float32LE.load(p, i &+ 7))
            s0 += a0 * a0; s1 += a1 * a1; s2 += a2 * a2; s3 += a3 * a3
            s4 += a4 * a4; s5 += a5 * a5; s6 += a6 * a6; s7 += a7 * a7
            i &+= 8
        }
        while i < n {
            let a = Double(Float32LE.load(p, i))
            s0 += a * a
            i &+= 1
        }
        self.s0 = s0; self.s1 = s1; self.s2 = s2; self.s3 = s3; self.s4 = s4; self.s5 = s5; self.s6 = s6; self.s7 = s7
    }

    var total: Double { ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)) }

    static func of(_ values: some Float32Segments) -> Double {
        var sums = SquareSums()
        values.forEachRun { _, p, n in sums.add(p, count: n) }
        return sums.total
    }
}
