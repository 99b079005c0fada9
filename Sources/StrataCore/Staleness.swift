#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Staleness discount s(σ) for an update based on a version σ versions behind the current one.
/// Negative staleness is treated as 0 (fresh).
public enum StalenessFunction: Sendable, Hashable, Codable, CustomStringConvertible {
    /// s(σ) = 1
    case constant
    /// s(σ) = (σ + 1)^(−a)   (FedAsync)
    case polynomial(exponent: Double)
    /// s(σ) = 1 if σ ≤ b else 1 / (a(σ − b) + 1)   (FedAsync)
    case hinge(slope: Double, threshold: Int)
    /// s(σ) = 1 / √(1 + σ)   (FedBuff)
    case fedBuff

    public func factor(staleness: Int) -> Double {
        let sigma = max(0, staleness)
        switch self {
        case .constant:
            return 1
        case .polynomial(let a):
            return pow(Double(sigma) + 1, -a)
        case .hinge(let a, let b):
            if sigma <= b { return 1 }
            return 1 / (a * Double(sigma - b) + 1)
        case .fedBuff:
            return 1 / (1 + Double(sigma)).squareRoot()
        }
    }

    /// Parses "constant", "polynomial:<a>", "hinge:<a>:<b>", "fedbuff" (names case-insensitive).
    /// `a` must be finite and ≥ 0, `b` an integer ≥ 0. Throws `StrataCoreError.invalidArgument` otherwise.
    public init(parsing text: String) throws {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        func bad(_ why: String) -> StrataCoreError {
            .invalidArgument("staleness function \"\(text)\": \(why); expected constant, polynomial:<a>, hinge:<a>:<b> or fedbuff")
        }
        func number(_ s: String) throws -> Double {
            guard let v = Double(s), v.isFinite, v >= 0 else { throw bad("\"\(s)\" is not a finite number >= 0") }
            return v
        }
        switch (parts[0].lowercased(), parts.count) {
        case ("constant", 1):
            self = .constant
        case ("fedbuff", 1):
            self = .fedBuff
        case ("polynomial", 2):
            self = .polynomial(exponent: try number(parts[1]))
        case ("hinge", 3):
            let a = try number(parts[1])
            guard let b = Int(parts[2]), b >= 0 else { throw bad("threshold \"\(parts[2])\" is not an integer >= 0") }
            self = .hinge(slope: a, threshold: b)
        default:
            throw bad("unknown name or wrong number of arguments")
        }
    }

    /// Round-trips with `init(parsing:)`.
    public var description: String {
        switch self {
        case .constant: return "constant"
        case .fedBuff: return "fedbuff"
        case .polynomial(let a): return "polynomial:\(Self.format(a))"
        case .hinge(let a, let b): return "hinge:\(Self.format(a)):\(b)"
        }
    }

    /// Integral values print without ".0" ("10"), others with Swift's shortest round-trip form.
    private static func format(_ v: Double) -> String {
        if v.isFinite, v == v.rounded(), abs(v) < 1e15 { return String(Int64(v)) }
        return String(v)
    }
}
