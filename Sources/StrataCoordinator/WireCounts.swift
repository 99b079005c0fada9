import StrataWire

/// The training and evaluation row counts an agent announced in its hello, as checked integers.
public struct AnnouncedCounts: Sendable, Hashable {
    public var train: Int64
    public var evaluation: Int64
    public init(train: Int64, evaluation: Int64) {
        self.train = train
        self.evaluation = evaluation
    }
}

/// Every count from the wire is a u64 the peer chose. These checks turn one into an `Int64` the coordinator
/// can weigh with, or into a typed refusal: no trapping conversion, no self-reported count taken at face
/// value (an update may not claim more rows than its session's hello, a hello no more than the bound).
enum WireCounts {
    /// The hello's counts, each at most `bound`.
    static func announced(_ hello: Hello, bound: Int64) -> Result<AnnouncedCounts, ErrorMessage> {
        guard let train = checked(hello.trainSampleCount, atMost: bound) else {
            return .failure(ErrorMessage(code: .outOfRange, message:
                "hello.trainSampleCount \(hello.trainSampleCount) is above this coordinator's bound of \(bound) rows per agent (--max-agent-samples)"))
        }
        guard let evaluation = checked(hello.evalSampleCount, atMost: bound) else {
            return .failure(ErrorMessage(code: .outOfRange, message:
                "hello.evalSampleCount \(hello.evalSampleCount) is above this coordinator's bound of \(bound) rows per agent (--max-agent-samples)"))
        }
        return .success(AnnouncedCounts(train: train, evaluation: evaluation))
    }

    /// A training update's sample count: 1 ... the hello's training rows.
    static func trainingSamples(_ update: Update, announced: AnnouncedCounts) -> Result<Int64, ErrorMessage> {
        rows(update.sampleCount, field: "sampleCount", atMost: announced.train, kind: "training")
    }

    /// An evaluation answer's sample count: 1 ... the hello's evaluation rows.
    static func evaluationSamples(_ update: Update, announced: AnnouncedCounts) -> Result<Int64, ErrorMessage> {
        rows(update.evalSampleCount, field: "evalSampleCount", atMost: announced.evaluation, kind: "evaluation")
    }

    private static func rows(_ value: UInt64, field: String, atMost bound: Int64, kind: String) -> Result<Int64, ErrorMessage> {
        guard value > 0 else {
            return .failure(ErrorMessage(code: .invalidUpdate, message: "\(field) is 0"))
        }
        guard let rows = checked(value, atMost: bound) else {
            return .failure(ErrorMessage(code: .outOfRange, message:
                "\(field) \(value) is above the \(bound) \(kind) rows this session's hello announced"))
        }
        return .success(rows)
    }

    static func checked(_ value: UInt64, atMost bound: Int64) -> Int64? {
        guard let exact = Int64(exactly: value), exact <= bound else { return nil }
        return exact
    }
}
