/// Which global model versions keep their parameters in the state database. Every version keeps its row
/// (provenance, update count, accuracy); the parameters of the others are dropped as newer versions commit.
/// Pinned versions are never dropped while pinned: the best version by the target metric (always), and the
/// versions an open evaluation round may still make the best.
public struct ModelRetention: Sendable, Hashable {
    /// Keep the parameters of the newest `latest` versions; 0 keeps every version's.
    public var latest: Int
    /// Also keep every `every`-th version's parameters (versions divisible by it); 0: none beyond the newest.
    public var every: Int

    public static let keepAll = ModelRetention(latest: 0, every: 0)

    public init(latest: Int, every: Int) {
        precondition(latest >= 0 && every >= 0, "retention counts must be >= 0")
        self.latest = latest
        self.every = every
    }

    /// Whether `version`'s parameters are kept once `newest` is committed. Version 0 (the initial model)
    /// is always kept.
    public func keeps(_ version: Int64, newest: Int64) -> Bool {
        latest == 0 || version == 0 || version > newest - Int64(latest) || (every > 0 && version % Int64(every) == 0)
    }

    /// The same, with `pinned` versions (the best version, versions under evaluation) kept whatever their age.
    public func keeps(_ version: Int64, newest: Int64, pinned: Set<Int64>) -> Bool {
        pinned.contains(version) || keeps(version, newest: newest)
    }
}
