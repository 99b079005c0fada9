#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One SplitMix64 step: advances `state` and returns the mixed output.
@inlinable
func splitMix64(_ state: inout UInt64) -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// Derives an independent stream seed from a base seed and a stream number.
@inlinable
func deriveSeed(_ seed: UInt64, _ stream: UInt64) -> UInt64 {
    var s = seed ^ (stream &* 0xD1B5_4A32_D192_ED03)
    _ = splitMix64(&s)
    return splitMix64(&s)
}

/// Deterministic PRNG: xoshiro256** seeded via SplitMix64. The sequence is fixed by the seed and does not
/// depend on the Swift standard library's random algorithms (shuffles and bounded integers are ours too).
public struct SeededGenerator: RandomNumberGenerator, Sendable {
    @usableFromInline var s0: UInt64
    @usableFromInline var s1: UInt64
    @usableFromInline var s2: UInt64
    @usableFromInline var s3: UInt64
    @usableFromInline var spareNormal: Double?

    public init(seed: UInt64) {
        var sm = seed
        s0 = splitMix64(&sm)
        s1 = splitMix64(&sm)
        s2 = splitMix64(&sm)
        s3 = splitMix64(&sm)
        spareNormal = nil
    }

    @inlinable
    public mutating func next() -> UInt64 {
        let result = ((s1 &* 5) << 7 | (s1 &* 5) >> 57) &* 9
        let t = s1 << 17
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = (s3 << 45) | (s3 >> 19)
        return result
    }

    /// Uniform in [0, 1) with 53 random bits.
    @inlinable
    public mutating func nextUniform() -> Double {
        Double(next() >> 11) * 0x1p-53
    }

    /// Uniform integer in `0..<bound` (Lemire's multiply-shift with rejection; unbiased).
    @inlinable
    public mutating func nextInt(below bound: Int) -> Int {
        precondition(bound > 0, "bound must be > 0")
        let n = UInt64(bound)
        var m = next().multipliedFullWidth(by: n)
        if m.low < n {
            let threshold = (0 &- n) % n
            while m.low < threshold {
                m = next().multipliedFullWidth(by: n)
            }
        }
        return Int(m.high)
    }

    /// Normal sample (Box-Muller; the second value of each pair is kept for the next call).
    public mutating func nextNormal(mean: Double = 0, standardDeviation: Double = 1) -> Double {
        if let z = spareNormal {
            spareNormal = nil
            return mean + standardDeviation * z
        }
        let u1 = 1.0 - nextUniform()          // (0, 1], so log is finite
        let u2 = nextUniform()
        let r = (-2.0 * log(u1)).squareRoot()
        let theta = 2.0 * Double.pi * u2
        spareNormal = r * sin(theta)
        return mean + standardDeviation * (r * cos(theta))
    }

    /// exp(N(mean, standardDeviation)) — parameters of the underlying normal, as numpy's `lognormal`.
    public mutating func nextLogNormal(mean: Double = 0, standardDeviation: Double = 1) -> Double {
        exp(nextNormal(mean: mean, standardDeviation: standardDeviation))
    }

    /// Fisher-Yates shuffle using `nextInt(below:)`.
    @inlinable
    public mutating func shuffle<T>(_ array: inout [T]) {
        guard array.count > 1 else { return }
        var i = array.count - 1
        while i > 0 {
            let j = nextInt(below: i + 1)
            array.swapAt(i, j)
            i -= 1
        }
    }
}
