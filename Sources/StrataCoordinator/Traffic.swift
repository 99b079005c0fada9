import StrataWire

/// Model bytes on the wire in this coordinator process: the deltas received, per encoding, and the parameters
/// sent in train tasks (and, apart, evaluation tasks). Counted as they travelled (tensor headers and values, or a compressed
/// delta's option value), without frame headers, TLS or heartbeats. Reported in the run summary, also as it
/// stood when the target was first seen reached (the cost of reaching it).
public struct Traffic: Sendable, Codable, Hashable {
    /// Per encoding (`float32`, `q8`, `top-k`): deltas received and their bytes.
    public var deltaUpdates: [String: Int64] = [:]
    public var deltaBytes: [String: Int64] = [:]
    /// Train tasks, and the bytes of their parameters (float32 tensors or task option 0x8002's value).
    public var tasks: Int64 = 0
    public var taskBytes: Int64 = 0
    /// Evaluation tasks and their parameters' bytes (not in `bytes`).
    public var evaluationTasks: Int64 = 0
    public var evaluationBytes: Int64 = 0

    public init() {}

    /// Deltas received, every encoding.
    public var updates: Int64 { deltaUpdates.values.reduce(0, +) }
    /// Model bytes of training both ways: deltas received and train tasks' parameters sent.
    public var bytes: Int64 { deltaBytes.values.reduce(0, +) + taskBytes }

    mutating func received(_ update: Update) {
        let encoding = update.compressedDelta.map { "\($0.kind)" } ?? "float32"
        deltaUpdates[encoding, default: 0] += 1
        deltaBytes[encoding, default: 0] += Int64(update.deltaWireBytes)
    }

    mutating func sent(_ parameters: [WireTensor], referenced: ReferencedParameters? = nil) {
        tasks += 1
        taskBytes += Int64(referenced?.encodedSize ?? WireTensor.wireSize(of: parameters))
    }

    /// Evaluation tasks: counted apart, since how often a run is evaluated is the experimenter's choice.
    mutating func evaluationSent(_ parameters: [WireTensor]) {
        evaluationTasks += 1
        evaluationBytes += Int64(WireTensor.wireSize(of: parameters))
    }
}
