/// What ends a run, besides an operator's signal or a failure. Times are seconds.
public struct EndConditions: Sendable, Hashable {
    /// The metric that decides the best version, the target and improvements.
    public var metric: TargetMetric
    /// Stop once a counted evaluation reaches this score on `metric`.
    public var target: Double?
    /// Stop once `metric` has not improved (by its margin) for this long since training started or since
    /// the last improvement, whichever is later.
    public var patience: Double?
    /// Stop this long after the coordinator started.
    public var maxDuration: Double?
    /// Stop once this global version is committed.
    public var maxVersions: Int64?
    /// The patience that ends a run given none of the conditions above (the default end).
    public var defaultPatience: Double

    /// The default end: 30 minutes without an improvement of the target metric.
    public static let defaultEndPatience: Double = 1800

    public init(metric: TargetMetric = .accuracy, target: Double? = nil, patience: Double? = nil, maxDuration: Double? = nil,
                maxVersions: Int64? = nil, defaultPatience: Double = EndConditions.defaultEndPatience) {
        self.metric = metric
        self.target = target
        self.patience = patience
        self.maxDuration = maxDuration
        self.maxVersions = maxVersions
        self.defaultPatience = defaultPatience
    }

    /// True when nothing but the default end stops the run (no target, patience, duration or version limit).
    public var endsByDefaultOnly: Bool { target == nil && patience == nil && maxDuration == nil && maxVersions == nil }

    /// The patience in force and whether it is the default end.
    public var effectivePatience: (seconds: Double, isDefault: Bool)? {
        if let patience { return (patience, false) }
        return endsByDefaultOnly ? (defaultPatience, true) : nil
    }
}

/// Why a run ended (the pure conditions; the coordinator adds signal and failure).
public enum EndReason: String, Sendable, Hashable, Codable, CaseIterable {
    case targetReached = "target-reached"
    case patience
    case defaultEnd = "default-end"
    case maxDuration = "max-duration"
    case maxVersions = "max-versions"
}

public struct EndDecision: Sendable, Hashable {
    public var reason: EndReason
    /// One sentence for the log and the summary.
    public var detail: String
    public init(reason: EndReason, detail: String) {
        self.reason = reason
        self.detail = detail
    }
}

/// A model version with its score on the target metric.
public struct ScoredVersion: Sendable, Hashable, Codable {
    public var version: Int64
    public var score: Double
    public init(version: Int64, score: Double) {
        self.version = version
        self.score = score
    }
}

/// When an evaluation round counts: answers from at least `minimumAnswers` agents and from at least `fraction`
/// of the agents the round asked. A round below it is reported but never counts for the target, the best
/// version or patience: the first versions are often evaluated by the first agent alone, and a few fast (or
/// lying) agents must not decide on their own.
public struct EvaluationQuorum: Sendable, Hashable {
    public var minimumAnswers: Int
    public var fraction: Double
    public init(minimumAnswers: Int = 1, fraction: Double = 0.5) {
        self.minimumAnswers = minimumAnswers
        self.fraction = fraction
    }

    /// Answers needed from a round that asked `asked` agents.
    public func required(asked: Int) -> Int {
        max(minimumAnswers, Int((fraction * Double(max(0, asked))).rounded(.up)))
    }

    public func counts(answered: Int, asked: Int) -> Bool { answered >= required(asked: asked) }
}

/// The run's progress towards its end, as a state machine fed with what happens and returning decisions:
/// training started, an evaluation closed, a version was committed, time passed. It keeps the best version and
/// the patience clock. Pure: the coordinator persists the best version and acts on the decisions. Once it
/// decided to end, the decision stays.
///
/// The best version is the latest whose score is no worse than the best score seen (`record`) by more than its
/// round's standard error: one-standard-error selection (Hastie, Tibshirani & Friedman, *The Elements of
/// Statistical Learning*, §7.10), with "simplest" read as "latest", the version trained on the most updates.
/// Without a standard error only a strictly better score replaces it. Comparing with the record, not with the
/// best version's own score, keeps a run of ties from drifting downhill.
public struct RunProgress: Sendable {
    public let conditions: EndConditions
    public let quorum: EvaluationQuorum
    /// The best version (restored across restarts by the caller).
    public private(set) var best: ScoredVersion?
    /// The best score of any counted evaluation so far (restored by the caller; the best version's own score
    /// when it has none).
    public private(set) var record: Double?
    /// The score an improvement must beat by the metric's margin: the score of the last improvement. Scores
    /// that creep up by less than the margin move `best` but not this, until together they pass it.
    public private(set) var reference: Double?
    /// When training started in this process (the patience clock's origin).
    public private(set) var trainingStartedAt: Double?
    /// When the last improvement was seen in this process.
    public private(set) var lastImprovementAt: Double?
    public private(set) var decision: EndDecision?

    public init(conditions: EndConditions, quorum: EvaluationQuorum = EvaluationQuorum(), restoredBest: ScoredVersion? = nil,
                restoredRecord: Double? = nil) {
        self.conditions = conditions
        self.quorum = quorum
        best = restoredBest
        reference = restoredBest?.score
        record = [restoredRecord, restoredBest?.score].compactMap { $0 }.filter(\.isFinite).min(by: conditions.metric.isBetter)
    }

    /// The first training task of this process was handed out; later calls change nothing.
    public mutating func trainingStarted(at now: Double) {
        if trainingStartedAt == nil { trainingStartedAt = now }
    }

    public struct Verdict: Sendable, Hashable {
        /// The round had its quorum: it counts for the target, the best version and patience.
        public var counted: Bool
        /// Answers the quorum needed.
        public var required: Int
        /// It replaced the best version.
        public var newBest: Bool
        /// It improved on the reference by the margin (the patience clock restarted).
        public var improved: Bool
        /// The run ends because of it (target reached).
        public var end: EndDecision?
    }

    /// An evaluation round of `version` closed with `score` on the target metric (nil: the round did not
    /// report that metric), `answered` of the `asked` agents answering; `standardError`, when known, is the
    /// score's (`ScoreSpread`).
    public mutating func evaluated(version: Int64, score: Double?, answered: Int, asked: Int, at now: Double,
                                   standardError: Double? = nil) -> Verdict {
        let required = quorum.required(asked: asked)
        guard answered >= required, let score, score.isFinite else {
            return Verdict(counted: false, required: required, newBest: false, improved: false, end: nil)
        }
        let metric = conditions.metric
        let newRecord = record.map { metric.isBetter(score, than: $0) } ?? true
        if newRecord { record = score }
        // A later version within chance of the record replaces an earlier one; never an earlier one a later.
        let tied = standardError.map { metric.ties(score, with: record ?? score, within: $0) } ?? false
        let newBest = newRecord || (tied && version > (best?.version ?? .min))
        if newBest { best = ScoredVersion(version: version, score: score) }
        let improved = reference.map { metric.improves(score, on: $0) } ?? true
        if improved {
            reference = score
            lastImprovementAt = now
        }
        var end: EndDecision?
        if decision == nil, let target = conditions.target, metric.reaches(score, target: target) {
            end = EndDecision(reason: .targetReached, detail: "version \(version) reached \(metric.name) \(Self.format(score)) (target \(Self.format(target)))")
            decision = end
        }
        return Verdict(counted: true, required: required, newBest: newBest, improved: improved, end: end)
    }

    /// `version` was committed (or restored).
    public mutating func committed(version: Int64) -> EndDecision? {
        guard decision == nil, let limit = conditions.maxVersions, version >= limit else { return nil }
        decision = EndDecision(reason: .maxVersions, detail: "reached version \(version) (--max-versions \(limit))")
        return decision
    }

    /// Time-based ends at `now` (seconds since the coordinator started).
    public mutating func check(at now: Double) -> EndDecision? {
        guard decision == nil else { return nil }
        if let limit = conditions.maxDuration, now >= limit {
            decision = EndDecision(reason: .maxDuration, detail: "ran for \(Self.format(limit)) s (--max-duration)")
            return decision
        }
        guard let (patience, isDefault) = conditions.effectivePatience, let started = trainingStartedAt else { return nil }
        let since = max(started, lastImprovementAt ?? started)
        guard now - since >= patience else { return nil }
        let metric = conditions.metric
        var detail: String
        if lastImprovementAt == nil && reference == nil {
            detail = "no evaluation counted for \(metric.name) in the \(Self.format(patience)) s since training started"
        } else {
            detail = "\(metric.name) did not improve \(metric.improvementText) for \(Self.format(patience)) s"
            if let best { detail += " (best \(Self.format(best.score)) at version \(best.version))" }
        }
        detail += isDefault ? " (the default end of a run with no --target, --patience, --max-duration or --max-versions)" : " (--patience)"
        decision = EndDecision(reason: isDefault ? .defaultEnd : .patience, detail: detail)
        return decision
    }

    /// Whole numbers without a fraction, others rounded to 4 decimals (no Foundation in StrataCore).
    static func format(_ value: Double) -> String {
        guard value.isFinite else { return "\(value)" }
        if value == value.rounded(), abs(value) < 1e15 { return String(Int64(value)) }
        let rounded = (value * 10_000).rounded() / 10_000
        return rounded == 0 ? "\(value)" : "\(rounded)"
    }
}
