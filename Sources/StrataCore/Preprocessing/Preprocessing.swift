/// How one raw column becomes a model input: `((value ?? fill) − center) / scale`.
public struct ColumnTransform: Codable, Hashable, Sendable {
    public var center: Double
    public var scale: Double
    /// Replaces a missing value before centring (the federated mean when the federation imputes).
    public var fill: Double

    public init(center: Double, scale: Double, fill: Double) {
        self.center = center
        self.scale = scale
        self.fill = fill
    }

    public static let identity = ColumnTransform(center: 0, scale: 1, fill: 0)

    /// Usable: finite everywhere, a positive scale.
    public var isValid: Bool { center.isFinite && fill.isFinite && scale.isFinite && scale > 0 }
}

/// The federation's preprocessing: part of its model, fixed once from the agents' statistics (or given),
/// stored with every version and exported with it, applied by every agent to every row.
public struct Preprocessing: Codable, Hashable, Sendable {
    /// The feature columns the model was fixed with, in order (empty when unknown).
    public var featureNames: [String]
    public var features: [ColumnTransform]
    /// Regression target; identity for classification.
    public var target: ColumnTransform
    /// Text labels: class k is `labels[k]`; empty when labels are numbers.
    public var labels: [String]

    public init(featureNames: [String] = [], features: [ColumnTransform], target: ColumnTransform = .identity, labels: [String] = []) {
        self.featureNames = featureNames
        self.features = features
        self.target = target
        self.labels = labels
    }

    public static func identity(featureCount: Int) -> Preprocessing {
        Preprocessing(features: Array(repeating: .identity, count: featureCount))
    }

    /// The features' centring and scaling (fill aside). Only for valid transforms (`ColumnTransform.isValid`).
    public var standardization: Standardization {
        Standardization(checkedMeans: features.map(\.center), scales: features.map(\.scale))
    }

    /// Standardises a row-major feature matrix in place (`values.count` a multiple of `features.count`).
    /// NaN marks a missing value: it becomes `fill` first.
    public func transformFeatures(_ values: inout [Float]) {
        let width = features.count
        guard width > 0 else { return }
        precondition(values.count % width == 0, "feature matrix of \(values.count) values is not rows of \(width)")
        standardization.apply(to: &values, featureCount: width)  // NaN stays NaN
        let filled = features.map { Float(($0.fill - $0.center) / $0.scale) }
        for i in values.indices where values[i].isNaN { values[i] = filled[i % width] }
    }

    public func transformTarget(_ y: Double) -> Double { (y - target.center) / target.scale }
    public func restoreTarget(_ y: Double) -> Double { y * target.scale + target.center }
}
