import NIOCore

/// Protocol 2 ends every message with an options section: `u16 count`, then `count` entries of
/// `u16 key`, `u32 length`, `length` bytes. Keys are numbered per message type. A receiver skips an entry
/// whose key it does not know, unless the key's top bit (`critical`) is set: then it refuses the message
/// with `unsupported-option`, because acting without understanding it would be wrong. New fields arrive as
/// new options, so later revisions need no lockstep upgrade of every peer.
public enum WireOptionKey {
    /// Set on keys a receiver must understand.
    public static let critical: UInt16 = 0x8000

    // hello
    /// The agent's feature column names, in model order.
    public static let helloFeatureNames: UInt16 = 1
    /// `AgentCapabilities` bit mask (u64).
    public static let helloCapabilities: UInt16 = 2

    // welcome
    /// The feature names the federation's model was fixed with (once known).
    public static let welcomeFeatureNames: UInt16 = 1
    /// The federation's id (u64): a new state database is a new federation. Agents drop stored updates of another.
    public static let welcomeFederation: UInt16 = 2
    /// The encoding the coordinator asks agents to send deltas in (u8 `TensorEncodingKind`, f32 top-k fraction).
    /// An agent that does not know it, or the encoding it names, sends float32, which is always accepted.
    public static let welcomeUpdateEncoding: UInt16 = 3
    /// The largest task or update payload the coordinator sends and accepts in parts (u64, §2 "Messages in
    /// parts"); sent to agents that announced `AgentCapabilities.messageParts`.
    public static let welcomeMaxMessageBytes: UInt16 = 4
    /// Whether train tasks may come as differences from the previous one (u8: 0 never, 1 they may; task option
    /// 0x8002); sent to agents that announced `AgentCapabilities.compressedTasks`. Absent: they may (as before
    /// this option existed). An agent told 0 need not keep the previous task's parameters.
    public static let welcomeTaskDifferences: UInt16 = 5
    /// The federation's preprocessing (once fixed): the agent applies it to every row.
    public static let welcomePreprocessing: UInt16 = critical | 1
    /// The layers of a model kind that has them (`WireModelKind.mlp`): without them the model is unknown.
    public static let welcomeModelLayers: UInt16 = critical | 16
    /// The tensors of a custom model (`WireModelKind.custom`): names and shapes, in the flat vector's order.
    public static let welcomeModelManifest: UInt16 = critical | 17

    // task
    /// The preprocessing the task's model expects; replaces the agent's copy for the session.
    public static let taskPreprocessing: UInt16 = critical | 1
    /// The parameters as a compressed difference from an earlier train task's (`ReferencedParameters`); the
    /// fixed `parameters` field is then empty.
    public static let taskReferencedParameters: UInt16 = critical | 2

    // update
    /// Answer to a statistics task.
    public static let updateStatistics: UInt16 = 1
    /// Sufficient statistics of the base model's evaluation (metrics beyond loss and accuracy).
    public static let updateEvaluation: UInt16 = 2
    /// The task failed (the agent's trainer crashed, hung or refused it): a string, the reason. Critical: a
    /// receiver that does not know it must not take the update for a result.
    public static let updateFailure: UInt16 = critical | 3
    /// The delta in a compressed encoding (`CompressedTensors`); the fixed `tensors` field is then empty.
    /// Critical: a receiver that ignored it would read an empty delta.
    public static let updateCompressedDelta: UInt16 = critical | 4
    /// f64 Σ ℓ_i² over the evaluation rows whose mean loss is `evalLoss`: the loss's spread, from which the
    /// coordinator knows how far apart two versions' losses must be to differ by more than chance.
    public static let updateLossSquares: UInt16 = 5
}

/// What an agent can do beyond the fixed fields of protocol 2 (hello option 2).
public struct AgentCapabilities: OptionSet, Sendable, Hashable {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    /// Answers statistics tasks (task kind 3).
    public static let statistics = AgentCapabilities(rawValue: 1 << 0)
    /// Applies the preprocessing of welcome/task options.
    public static let preprocessing = AgentCapabilities(rawValue: 1 << 1)
    /// Reports evaluation sufficient statistics (update option 2).
    public static let evaluationStatistics = AgentCapabilities(rawValue: 1 << 2)

    /// Sends deltas in the compressed encodings of update option 0x8004 when the welcome asks (option 3).
    public static let compressedDeltas = AgentCapabilities(rawValue: 1 << 3)

    /// Reconstructs train tasks' parameters from task option 0x8002 (a difference from its previous train task).
    public static let compressedTasks = AgentCapabilities(rawValue: 1 << 4)

    /// Sends and receives tasks and updates larger than a frame as part frames (message type 9).
    public static let messageParts = AgentCapabilities(rawValue: 1 << 5)
    public static let all: AgentCapabilities = [.statistics, .preprocessing, .evaluationStatistics, .compressedDeltas, .compressedTasks, .messageParts]
}

/// One option as it travels: the key and its raw value bytes.
struct RawOption {
    var key: UInt16
    var value: ByteBuffer
}

extension ByteBuffer {
    mutating func writeWireOptions(_ options: [(UInt16, (inout ByteBuffer) -> Void)]) {
        writeInteger(UInt16(options.count), endianness: .little)
        for (key, write) in options {
            writeInteger(key, endianness: .little)
            let lengthAt = writerIndex
            writeInteger(UInt32(0), endianness: .little)
            let start = writerIndex
            write(&self)
            setInteger(UInt32(writerIndex - start), at: lengthAt, endianness: .little)
        }
    }
}

extension PayloadReader {
    /// Reads the options section; refuses a duplicated key, and a critical key not in `known`.
    mutating func options(_ field: String, known: Set<UInt16>) throws(WireError) -> [UInt16: ByteBuffer] {
        let count = Int(try u16(field + ".count"))
        var options: [UInt16: ByteBuffer] = [:]
        var seen = Set<UInt16>()
        for index in 0..<count {
            let key = try u16("\(field)[\(index)].key")
            let length = Int(try u32("\(field)[\(index)].length"))
            guard let value = buffer.readSlice(length: length) else { throw .truncated(field: "\(field)[\(index)].value") }
            guard seen.insert(key).inserted else {
                throw .invalidValue(field: "\(field)[\(index)].key", reason: "option \(key) appears twice")
            }
            if known.contains(key) {
                options[key] = value
            } else if key & WireOptionKey.critical != 0 {
                throw .unsupportedOption(key: key, field: field)
            }
        }
        return options
    }
}

/// Decodes one option's value, which must be consumed exactly.
func decodeOption<T>(_ value: ByteBuffer, _ field: String, _ body: (inout PayloadReader) throws(WireError) -> T) throws(WireError) -> T {
    var reader = PayloadReader(buffer: value)
    let result = try body(&reader)
    guard reader.buffer.readableBytes == 0 else {
        throw .invalidValue(field: field, reason: "\(reader.buffer.readableBytes) bytes left over in the option")
    }
    return result
}
