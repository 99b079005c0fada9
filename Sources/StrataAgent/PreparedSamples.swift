import StrataCore
import StrataStore
import StrataWire

/// The rows as the model sees them: the agent's samples after the federation's preprocessing (none until
/// the coordinator sends one). The raw samples are kept, so a new preprocessing is applied to them, never on
/// top of an earlier one.
struct PreparedSamples: Sendable {
    let raw: LoadedSamples
    private(set) var current: LoadedSamples
    private(set) var preprocessing: Preprocessing?

    init(raw: LoadedSamples) {
        self.raw = raw
        self.current = raw
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
        guard incoming.labels.isEmpty else {
            throw AgentError.incompatibleModel("the federation's labels are text (\(incoming.labels.prefix(4).joined(separator: ", "))…) but this agent's label column holds numbers")
        }
        var next = raw
        for keyPath in [\LoadedSamples.train, \LoadedSamples.test] {
            var dataset = next[keyPath: keyPath]
            incoming.transformFeatures(&dataset.features)
            if spec.kind == .linearRegression {
                dataset.labels = dataset.labels.map { Float(incoming.transformTarget(Double($0))) }
            }
            next[keyPath: keyPath] = dataset
        }
        current = next
        preprocessing = incoming
    }

    /// What a statistics task returns: the raw training rows, summarised column by column.
    func summary() -> DataSummary {
        let train = raw.train
        let width = train.featureCount
        var features: [ColumnSummary] = []
        features.reserveCapacity(width)
        for j in 0..<width {
            features.append(ColumnSummary(values: stride(from: j, to: train.features.count, by: max(1, width)).lazy.map { Double(train.features[$0]) }))
        }
        return DataSummary(features: features, labels: .numeric(ColumnSummary(values: train.labels.lazy.map(Double.init))))
    }
}
