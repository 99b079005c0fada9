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
        guard update.sampleCount > 0 else {
            return .failure(ErrorMessage(code: .invalidUpdate, message: "sample count is 0"))
        }
        guard let samples = checked(update.sampleCount, atMost: announced.train) else {
            return .failure(ErrorMessage(code: .outOfRange, message:
                "sampleCount \(update.sampleCount) is above the \(announced.train) training rows this session's hello announced"))
        }
        return .success(samples)
    }

    /// An evaluation answer's sample count: 1 ... the hello's evaluation rows.
    static func evaluationSamples(_ update: Update, announced: AnnouncedCounts) -> Result<Int64, ErrorMessage> {
        guard update.evalSampleCount > 0 else {
            return .failure(ErrorMessage(code: .invalidUpdate, message: "evalSampleCount is 0"))
        }
        guard let samples = checked(update.evalSampleCount, atMost: announced.evaluation) else {
            return .failure(ErrorMessage(code: .outOfRange, message:
                "evalSampleCount \(update.evalSampleCount) is above the \(announced.evaluation) evaluation rows this session's hello announced"))
        }
        return .success(samples)
    }

    static func checked(_ value: UInt64, atMost bound: Int64) -> Int64? {
        guard let exact = Int64(exactly: value), exact <= bound else { return nil }
        return exact
    }
}
