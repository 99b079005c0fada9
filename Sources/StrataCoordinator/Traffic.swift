import StrataWire

/// Model bytes on the wire in this coordinator process: the deltas received, per encoding, and the parameters
/// sent in training and evaluation tasks. Counted as they travelled (tensor headers and values, or a compressed
/// delta's option value), without frame headers, TLS or heartbeats. Reported in the run summary, also as it
/// stood when the target was first seen reached (the cost of reaching it).
public struct Traffic: Sendable, Codable, Equatable {
    /// Per encoding (`float32`, `q8`, `top-k`): deltas received and their bytes.
    public var deltaUpdates: [String: Int64] = [:]
    public var deltaBytes: [String: Int64] = [:]
    /// Tasks that carried parameters, and the parameters' bytes.
    public var tasks: Int64 = 0
    public var taskBytes: Int64 = 0

    public init() {}

    mutating func received(_ update: Update) {
        let encoding = update.compressedDelta.map { "\($0.kind)" } ?? "float32"
        deltaUpdates[encoding, default: 0] += 1
        deltaBytes[encoding, default: 0] += Int64(update.deltaWireBytes)
    }

    mutating func sent(_ parameters: [WireTensor]) {
        tasks += 1
        taskBytes += Int64(2 + parameters.reduce(0) { $0 + 2 + $1.name.utf8.count + 1 + 4 * $1.shape.count + $1.bytes.readableBytes })
    }
}
