// StrataCore: models, local training, staleness functions and aggregation rules.
// Pure Swift, no I/O. Formulas and sources: docs/ALGORITHMS.md.

#if canImport(Darwin)
import Darwin
#elseif canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Errors reported by StrataCore's validating entry points.
public enum StrataCoreError: Error, Hashable, Sendable {
    case invalidArgument(String)
    /// A vector had `actual` elements (bytes for the raw-bytes paths, see the call site) where `expected` were required.
    case shapeMismatch(expected: Int, actual: Int)
    /// The first non-finite (NaN or infinite) element.
    case nonFinite(index: Int)
}
