import StrataCore

/// What to do with a row that has a NULL (or empty text) where a value is needed.
public enum NullPolicy: String, Sendable, Hashable, CaseIterable, Codable {
    /// Stop with an error naming the row and the column (the default).
    case refuse
    /// Leave the row out, counting it.
    case skip
    /// Keep the row; a missing feature value is marked NaN until `LoadedSamples.imputing(means:)` fills it
    /// (the federation's mean). A row whose label or split value is missing is left out, as with `skip`:
    /// a label is never imputed.
    case impute
}

/// A feature column as it was read: its name, what its values turned out to be, its declared SQL type.
public struct FeatureColumn: Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable, Codable {
        /// Every value stored as an INTEGER.
        case integer
        /// REAL values (with or without INTEGER ones): REAL, FLOAT, DOUBLE, DECIMAL, NUMERIC columns.
        case real
        /// Numbers stored as TEXT ('12', ' 3.5 ', '1e3'), as `sqlite3 .import` makes them.
        case textNumerals = "text numerals"
        /// 0/1 integers in a BOOL/BOOLEAN column, or true/false, yes/no, t/f text (any case): read as 1/0.
        case boolean
        /// Dates or timestamps of a `--date-columns` column, as days since 1970-01-01 UTC.
        case date = "dates (days since 1970-01-01)"
        /// Every value is missing.
        case noValues = "no values"
    }

    public var name: String
    public var kind: Kind
    /// The type the table declares (`INTEGER`, `DECIMAL(10,2)`, `TEXT`, …); nil for a query's column.
    public var declaredType: String?
    /// Values that were NULL or empty text, in every row read (kept, skipped or imputed).
    public var missingCount: Int

    public init(name: String, kind: Kind, declaredType: String?, missingCount: Int) {
        self.name = name
        self.kind = kind
        self.declaredType = declaredType
        self.missingCount = missingCount
    }

    /// `income real (DECIMAL(10,2))`, `age integer, 3 missing`.
    public var description: String {
        var text = "\(name) \(kind.rawValue)"
        if let declaredType, !declaredType.isEmpty { text += " (\(declaredType))" }
        if missingCount > 0 { text += ", \(missingCount) missing" }
        return text
    }
}

/// A column of the table or query that is not used, and why: shown at start so that nothing is dropped silently.
public struct ColumnNote: Sendable, Hashable, CustomStringConvertible {
    public var name: String
    public var reason: String
    public init(name: String, reason: String) {
        self.name = name
        self.reason = reason
    }
    public var description: String { "\(name) (\(reason))" }
}

/// How the rows read were used.
public struct RowCounts: Sendable, Hashable, CustomStringConvertible {
    /// Rows the table or query returned.
    public var read = 0
    /// Left out (`skip`) because a feature value was missing.
    public var skippedForMissingFeature = 0
    /// Left out (`skip`, `impute`) because the label was missing.
    public var skippedForMissingLabel = 0
    /// Left out (`skip`, `impute`) because the split column's value was missing.
    public var skippedForMissingSplit = 0
    /// Missing feature values kept as NaN for imputation (`impute`), in training and evaluation rows.
    public var missingValuesKept = 0
    /// The source had more rows; reading stopped at this many (`--max-rows`).
    public var stoppedAt: Int?

    public init() {}

    public var skipped: Int { skippedForMissingFeature + skippedForMissingLabel + skippedForMissingSplit }
    public var used: Int { read - skipped }

    public var description: String {
        var parts = [stoppedAt.map { "\(read) read (stopped at --max-rows \($0); the source has more)" } ?? "\(read) read"]
        if skipped > 0 {
            var why: [String] = []
            if skippedForMissingFeature > 0 { why.append("\(skippedForMissingFeature) for a missing feature value") }
            if skippedForMissingLabel > 0 { why.append("\(skippedForMissingLabel) for a missing label") }
            if skippedForMissingSplit > 0 { why.append("\(skippedForMissingSplit) for a missing split value") }
            parts.append("\(skipped) skipped (\(why.joined(separator: ", ")))")
        }
        if missingValuesKept > 0 { parts.append("\(missingValuesKept) missing values to impute") }
        return parts.joined(separator: ", ")
    }
}

/// The label column as read.
public enum LabelKind: Sendable, Hashable, CustomStringConvertible {
    /// Every label is a number (INTEGER, REAL or a TEXT numeral): the class index or the regression target.
    case numeric(FeatureColumn.Kind)
    /// Some label is text that is not a numeral ('approved'): every label is kept as its text until it is
    /// mapped through the federation's vocabulary (`LoadedSamples.mappingLabels(through:)`).
    case strings

    public var description: String {
        switch self {
        case .numeric(let kind): "numeric (\(kind.rawValue))"
        case .strings: "text (class names)"
        }
    }
}

/// An agent's rows, split into training and evaluation rows, with what was learnt about the columns.
public struct LoadedSamples: Sendable {
    /// Training rows. Feature values a NULL left missing under `impute` are NaN until `imputing(means:)`;
    /// with `.strings` labels, `labels` are NaN until `mappingLabels(through:)`.
    public var train: Dataset
    /// Evaluation rows, likewise.
    public var test: Dataset
    /// The feature columns used, in model order (feature j ↔ `columns[j]`), with their detected kind.
    public var columns: [FeatureColumn]
    /// Columns of the table or query not used as features, with the reason (label, split and excluded
    /// columns are not listed).
    public var skippedColumns: [ColumnNote]
    public var labelColumn: String
    public var labelKind: LabelKind
    /// The text label of every training row (`.strings` labels only; nil once mapped).
    public var trainLabelNames: [String]?
    /// The text label of every evaluation row, likewise.
    public var testLabelNames: [String]?
    public var rows: RowCounts
    public var nullPolicy: NullPolicy
    /// What the source says about itself for the start-up log (a server database: the server, the driver and
    /// how the session was made read-only).
    public var sourceNotes: [String] = []

    public init(train: Dataset, test: Dataset, columns: [FeatureColumn], skippedColumns: [ColumnNote] = [],
                labelColumn: String = "label", labelKind: LabelKind = .numeric(.real), trainLabelNames: [String]? = nil,
                testLabelNames: [String]? = nil, rows: RowCounts = RowCounts(), nullPolicy: NullPolicy = .refuse) {
        self.train = train
        self.test = test
        self.columns = columns
        self.skippedColumns = skippedColumns
        self.labelColumn = labelColumn
        self.labelKind = labelKind
        self.trainLabelNames = trainLabelNames
        self.testLabelNames = testLabelNames
        self.rows = rows
        self.nullPolicy = nullPolicy
    }

    /// The feature names, in model order: what the model manifest records.
    public var featureColumns: [String] { columns.map(\.name) }

    /// Text labels not yet mapped to class indices.
    public var hasUnmappedLabels: Bool { trainLabelNames != nil || testLabelNames != nil }

    /// Missing feature values (NaN) not yet imputed.
    public var hasMissingValues: Bool {
        train.features.contains(where: \.isNaN) || test.features.contains(where: \.isNaN)
    }

    /// Labels are class indices or targets and every feature value is present: training may start.
    public var isReadyForTraining: Bool { !hasUnmappedLabels && !hasMissingValues }

    /// How many training and evaluation rows carry each text label (nil for numeric labels): this agent's
    /// part of the federation's label vocabulary. Both sets count, so that the vocabulary covers every row
    /// that will be mapped.
    public var labelCounts: LabelCounts? {
        guard trainLabelNames != nil || testLabelNames != nil else { return nil }
        var counts = LabelCounts(labels: trainLabelNames ?? [])
        counts.merge(LabelCounts(labels: testLabelNames ?? []))
        return counts
    }

    /// Per-feature statistics of the training rows (missing values counted, not averaged): this agent's part
    /// of the federation's standardisation and imputation means. Evaluation rows are left out, as a held-out
    /// set must be.
    public func featureStatistics() -> [FeatureStatistics] {
        FeatureStatistics.compute(train)
    }

    /// The samples with every missing feature value j filled with `means[j]` (the federation's means,
    /// `FeatureStatistics.mean` of the merged statistics), training and evaluation rows alike.
    public func imputing(means: [Double]) -> LoadedSamples {
        precondition(means.count == columns.count, "\(means.count) means for \(columns.count) features")
        var copy = self
        copy.train = train.imputingMissing(with: means)
        copy.test = test.imputingMissing(with: means)
        return copy
    }

    /// The samples with their text labels replaced by class indices of the federation's vocabulary. Throws
    /// `DataSourceError.unknownLabel` naming a label the vocabulary does not hold. Numeric labels are
    /// returned unchanged.
    public func mappingLabels(through vocabulary: LabelVocabulary) throws(DataSourceError) -> LoadedSamples {
        guard hasUnmappedLabels else { return self }
        var copy = self
        do {
            copy.train.labels = try vocabulary.classIndices(for: trainLabelNames ?? [])
            copy.test.labels = try vocabulary.classIndices(for: testLabelNames ?? [])
        } catch {
            guard case .unknownLabel(let label, _, let known) = error else { preconditionFailure("\(error)") }
            let all = (trainLabelNames ?? []) + (testLabelNames ?? [])
            throw .unknownLabel(column: labelColumn, label: label, rows: all.lazy.filter { $0 == label }.count, vocabulary: known)
        }
        copy.trainLabelNames = nil
        copy.testLabelNames = nil
        return copy
    }

    /// The samples with the standardisation applied to the features of training and evaluation rows.
    public func standardized(by standardization: Standardization) -> LoadedSamples {
        var copy = self
        standardization.apply(to: &copy.train)
        standardization.apply(to: &copy.test)
        return copy
    }

    /// Lines for the agent's start-up log: the columns used in order with their kind, the label, what was
    /// left out and how the rows were used.
    public var summaryLines: [String] {
        var lines = sourceNotes
        lines.append("features (\(columns.count), in model order): "
                     + columns.enumerated().map { "\($0.offset + 1). \($0.element)" }.joined(separator: "; "))
        lines.append("label: \(labelColumn), \(labelKind)")
        if !skippedColumns.isEmpty {
            lines.append("columns not used: " + skippedColumns.map(\.description).joined(separator: "; "))
        }
        lines.append("rows: \(rows); \(train.count) training, \(test.count) evaluation (null policy \(nullPolicy.rawValue))")
        return lines
    }
}
