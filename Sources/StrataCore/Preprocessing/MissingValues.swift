extension Dataset {
    /// Missing feature values: NaN marks them (a NULL kept by the data source's `impute` policy).
    public var missingValueCount: Int { features.reduce(0) { $0 + ($1.isNaN ? 1 : 0) } }

    /// The dataset with every missing (NaN) value of feature j replaced by `values[j]` — the federation's mean
    /// of that feature (`FeatureStatistics.mean`). Labels are left as they are.
    public func imputingMissing(with values: [Double]) -> Dataset {
        precondition(values.count == featureCount, "\(values.count) imputation values for \(featureCount) features")
        guard featureCount > 0 else { return self }
        var copy = self
        let fill = values.map { Float($0) }
        copy.features.withUnsafeMutableBufferPointer { x in
            for i in x.indices where x[i].isNaN { x[i] = fill[i % featureCount] }
        }
        return copy
    }
}
