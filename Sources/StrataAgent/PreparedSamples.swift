import NIOConcurrencyHelpers
import StrataCore
import StrataData
import StrataStore
import StrataWire

/// The rows as the model sees them: the agent's samples after the federation's preprocessing. The raw
/// samples are kept, so a new preprocessing is applied to them, never on top of an earlier one.
///
/// Until a preprocessing arrives (a coordinator run with `--standardize off` never sends one) rows are used
/// as read, missing values filled with this agent's own training means; text labels cannot be numbered
/// without the federation's vocabulary, so such an agent refuses to train.
struct PreparedSamples: Sendable {
    let raw: LoadedSamples
    private(set) var current: LoadedSamples
    private(set) var preprocessing: Preprocessing?
    /// Changes whenever `current` does (a trainer process is sent the rows again when it changes).
    private(set) var generation = PreparedSamples.nextGeneration()

    private static let generations = NIOLockedValueBox(0)
    private static func nextGeneration() -> Int { generations.withLockedValue { $0 += 1; return $0 } }

    init(raw: LoadedSamples) {
        self.raw = raw
        self.current = raw.hasMissingValues ? raw.imputing(means: raw.featureStatistics().map(\.mean)) : raw
    }

    /// Applies `wire` to the raw rows (a no-op when it is the one in force).
    mutating func apply(_ wire: WirePreprocessing, spec: ModelSpec) throws {
        let incoming = Preprocessing(wire, featureNames: raw.featureColumns)
        guard incoming != preprocessing else { return }
        guard incoming.features.count == raw.featureColumns.count else {
            throw AgentError.incompatibleModel("the federation's preprocessing has \(incoming.features.count) features but the data has \(raw.featureColumns.count)")
        }
        if let bad = incoming.features.firstIndex(where: { !$0.isValid }) ?? (incoming.target.isValid ? nil : -1) {
            throw AgentError.incompatibleModel("the federation's preprocessing is unusable (\(bad < 0 ? "target" : raw.featureColumns[bad]): zero, negative or non-finite scale)")
        }
        var next = raw.hasMissingValues ? raw.imputing(means: incoming.features.map(\.fill)) : raw
        if incoming.labels.isEmpty {
            guard !raw.hasUnmappedLabels else {
                throw AgentError.incompatibleModel("this agent's labels are text but the federation sent no label vocabulary: run the coordinator with --standardize on (or a --preprocessing-file with labels)")
            }
        } else {
            guard raw.hasUnmappedLabels else {
                throw AgentError.incompatibleModel("the federation's labels are text (\(incoming.labels.prefix(4).joined(separator: ", "))…) but this agent's label column holds numbers")
            }
            guard spec.isClassifier, incoming.labels.count <= spec.outputCount else {
                throw AgentError.incompatibleModel("the federation's vocabulary has \(incoming.labels.count) labels for a model of \(spec.outputCount) outputs")
            }
            next = try next.mappingLabels(through: try LabelVocabulary(labels: incoming.labels))
        }
        next = next.standardized(by: incoming.standardization)
        if !spec.isClassifier {
            for keyPath in [\LoadedSamples.train, \LoadedSamples.test] {
                next[keyPath: keyPath].labels = next[keyPath: keyPath].labels.map { Float(incoming.transformTarget(Double($0))) }
            }
        }
        current = next
        preprocessing = incoming
        generation = Self.nextGeneration()
    }

    /// Before training or evaluating: rows the model can use.
    func ready() throws -> LoadedSamples {
        guard !current.hasUnmappedLabels else {
            throw AgentError.incompatibleModel("this agent's labels are text and the coordinator sent no label vocabulary: run it with --standardize on")
        }
        return current
    }

    /// What a statistics task returns: the raw training rows, summarised column by column (missing values
    /// counted, not filled), and the labels: text label counts over every row, or a numeric label's summary.
    func summary() -> DataSummary {
        let labels: DataSummary.Labels = raw.labelCounts.map { .text($0) }
            ?? .numeric(FeatureStatistics(values: raw.train.labels))
        return DataSummary(features: raw.featureStatistics(), labels: labels)
    }
}
