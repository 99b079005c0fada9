/// How many rows carry each string label (`'approved'`, `'declined'`, …): what an agent reports so that the
/// federation can fix one label vocabulary. Counts of disjoint parts add up.
public struct LabelCounts: Sendable, Hashable, Codable {
    public private(set) var counts: [String: Int]

    public init(_ counts: [String: Int] = [:]) {
        self.counts = counts.filter { $0.value != 0 }
    }

    /// Counts every label of the sequence.
    public init<S: Sequence>(labels: S) where S.Element == String {
        var counts: [String: Int] = [:]
        for label in labels { counts[label, default: 0] += 1 }
        self.counts = counts
    }

    public mutating func add(_ label: String, count: Int = 1) {
        counts[label, default: 0] += count
    }

    public mutating func merge(_ other: LabelCounts) {
        for (label, count) in other.counts { counts[label, default: 0] += count }
    }

    public func merging(_ other: LabelCounts) -> LabelCounts {
        var merged = self
        merged.merge(other)
        return merged
    }

    /// The counts of all the parts together (addition is exact and commutative: the order does not matter).
    public static func merged(_ parts: [LabelCounts]) -> LabelCounts {
        parts.reduce(into: LabelCounts()) { $0.merge($1) }
    }

    /// Rows counted.
    public var total: Int { counts.values.reduce(0, +) }

    /// Every label seen, sorted: class index i is the i-th label.
    public var vocabulary: LabelVocabulary { LabelVocabulary(sorting: counts.keys) }

    /// Counts that came from another process: none negative.
    public func validate() throws(LabelVocabularyError) {
        if let bad = counts.first(where: { $0.value < 0 }) { throw .negativeCount(label: bad.key, count: bad.value) }
    }
}

/// The ordered list of a federation's class labels: class index i ↔ `labels[i]`. The labels are unique and
/// sorted by their UTF-8 bytes, so that a client in any language sorts them the same way: `["approved",
/// "declined"]`, `["no", "yes"]`, and uppercase before lowercase (`["No", "Yes", "no"]`). Labels compare as
/// Swift strings (Unicode canonical equivalence).
public struct LabelVocabulary: Sendable, Hashable, Codable, CustomStringConvertible {
    public let labels: [String]
    private let indices: [String: Int]

    /// The labels as given, which must already be unique and sorted by UTF-8 bytes (a vocabulary received from
    /// the coordinator is checked this way: a client must not guess another order).
    public init(labels: [String]) throws(LabelVocabularyError) {
        var indices: [String: Int] = [:]
        for (i, label) in labels.enumerated() {
            if i > 0, !Self.precedes(labels[i - 1], label) {
                throw indices[label] != nil ? .duplicateLabel(label) : .notSorted(previous: labels[i - 1], label: label)
            }
            guard indices.updateValue(i, forKey: label) == nil else { throw .duplicateLabel(label) }
        }
        self.labels = labels
        self.indices = indices
    }

    /// The distinct labels of the sequence, sorted.
    public init<S: Sequence>(sorting labels: S) where S.Element == String {
        let unique = Array(Set(labels)).sorted(by: Self.precedes)
        self.labels = unique
        self.indices = Dictionary(uniqueKeysWithValues: unique.enumerated().map { ($1, $0) })
    }

    /// The order of the vocabulary: lexicographic over UTF-8 bytes.
    public static func precedes(_ a: String, _ b: String) -> Bool {
        a.utf8.lexicographicallyPrecedes(b.utf8)
    }

    public var count: Int { labels.count }

    /// The class index of a label, nil when the vocabulary does not hold it.
    public func index(of label: String) -> Int? { indices[label] }

    /// The class index of every label, as the `Float` labels `Dataset` holds. Throws on the first label the
    /// vocabulary does not hold, naming it and how many of the given labels are unknown.
    public func classIndices(for labels: [String]) throws(LabelVocabularyError) -> [Float] {
        var result = [Float](repeating: 0, count: labels.count)
        for (i, label) in labels.enumerated() {
            guard let index = indices[label] else {
                let unknown = labels.lazy.filter { self.indices[$0] == nil }.count
                throw .unknownLabel(label, occurrences: unknown, vocabulary: self.labels)
            }
            result[i] = Float(index)
        }
        return result
    }

    public var description: String { "[" + labels.map { "'\($0)'" }.joined(separator: ", ") + "]" }

    public static func == (a: LabelVocabulary, b: LabelVocabulary) -> Bool { a.labels == b.labels }
    public func hash(into hasher: inout Hasher) { hasher.combine(labels) }

    public init(from decoder: any Decoder) throws {
        let labels = try decoder.singleValueContainer().decode([String].self)
        try self.init(labels: labels)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(labels)
    }
}

public enum LabelVocabularyError: Error, Hashable, Sendable, CustomStringConvertible {
    /// `occurrences`: how many of the labels mapped are not in the vocabulary (this one and any other).
    case unknownLabel(String, occurrences: Int, vocabulary: [String])
    case notSorted(previous: String, label: String)
    case duplicateLabel(String)
    case negativeCount(label: String, count: Int)

    public var description: String {
        switch self {
        case .unknownLabel(let label, let occurrences, let vocabulary):
            let shown = vocabulary.prefix(10).map { "'\($0)'" }.joined(separator: ", ") + (vocabulary.count > 10 ? ", …" : "")
            return "label '\(label)' is not in the federation's label vocabulary [\(shown)] (\(occurrences) label\(occurrences == 1 ? "" : "s") unknown)"
        case .notSorted(let previous, let label):
            return "label vocabulary not sorted by UTF-8 bytes: '\(previous)' comes before '\(label)'"
        case .duplicateLabel(let label):
            return "label vocabulary lists '\(label)' twice"
        case .negativeCount(let label, let count):
            return "label '\(label)' has a negative count \(count)"
        }
    }
}
