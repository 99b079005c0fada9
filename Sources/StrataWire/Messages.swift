import NIOCore

/// A named tensor of little-endian Float32 values. The values stay as the received bytes (a slice of
/// the frame's `ByteBuffer`, no copy) until a consumer reads them: an aggregator can fold them straight
/// into its accumulator.
public struct WireTensor: Sendable, Hashable {
    public var name: String
    public var shape: [Int]
    /// `elementCount * 4` bytes, IEEE 754 binary32, little-endian.
    public var bytes: ByteBuffer

    public var elementCount: Int { shape.reduce(1, *) }

    /// Bytes of a `tensors` field holding `tensors`: the count, then each header and its values.
    public static func wireSize(of tensors: [WireTensor]) -> Int {
        2 + tensors.reduce(0) { $0 + headerSize(name: $1.name, rank: $1.shape.count) + $1.bytes.readableBytes }
    }

    /// Bytes of one tensor's header in a `tensors` field: its name (u16 length and UTF-8), rank, dimensions.
    static func headerSize(name: String, rank: Int) -> Int {
        2 + name.utf8.count + 1 + 4 * rank
    }

    public init(name: String, shape: [Int], bytes: ByteBuffer) {
        self.name = name
        self.shape = shape
        self.bytes = bytes
    }

    public init(name: String, shape: [Int], values: some Collection<Float>) {
        precondition(shape.reduce(1, *) == values.count, "tensor shape \(shape) does not match \(values.count) values")
        var buffer = ByteBuffer.exactCapacity(values.count * 4)
        buffer.writeFloat32LittleEndian(contentsOf: values)
        self.init(name: name, shape: shape, bytes: buffer)
    }

    /// The values as an array (one copy).
    public func floats() -> [Float] {
        let count = elementCount
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            copyValues(into: UnsafeMutableRawBufferPointer(out))
            initialized = count
        }
    }

    /// Copies the `elementCount` values into `target` (at least `elementCount * 4` bytes, Float-aligned): a
    /// plain memory copy on little-endian machines.
    func copyValues(into target: UnsafeMutableRawBufferPointer) {
        let count = elementCount
        precondition(target.count >= count * 4 && bytes.readableBytes >= count * 4)
        bytes.withUnsafeReadableBytes { raw in
            #if _endian(little)
            target.baseAddress!.copyMemory(from: raw.baseAddress!, byteCount: count * 4)
            #else
            for i in 0..<count {
                let value = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
                target.storeBytes(of: value, toByteOffset: i * 4, as: Float.self)
            }
            #endif
        }
    }
}

extension ByteBuffer {
    mutating func writeFloat32LittleEndian(contentsOf values: some Collection<Float>) {
        let count = values.count
        reserveCapacity(minimumWritableBytes: count * 4)
        #if _endian(little)
        // Contiguous floats are already little-endian binary32: one copy (a model every commit).
        let copied: Void? = values.withContiguousStorageIfAvailable { writeBytes(UnsafeRawBufferPointer($0)) }
        if copied != nil { return }
        #endif
        var written = 0
        writeWithUnsafeMutableBytes(minimumWritableBytes: count * 4) { raw in
            var offset = 0
            for value in values {
                raw.storeBytes(of: value.bitPattern.littleEndian, toByteOffset: offset, as: UInt32.self)
                offset += 4
            }
            written = offset
            return offset
        }
        assert(written == count * 4)
    }
}

/// Model families a federation can train. The byte value is the wire encoding.
public enum WireModelKind: UInt8, Sendable, Hashable {
    case softmaxRegression = 1
    case linearRegression = 2
    /// A multilayer perceptron classifier; its hidden layers travel in welcome option 0x8010.
    case mlp = 3
    /// Named tensors of any shapes (welcome option 0x8011), trained by the data owner's own trainer.
    case custom = 4
}

/// One tensor of a custom model's manifest (welcome option 0x8011).
public struct WireTensorShape: Sendable, Hashable {
    public var name: String
    public var shape: [UInt32]
    public init(name: String, shape: [UInt32]) {
        self.name = name
        self.shape = shape
    }
}

/// The hidden layers of an MLP (welcome option 0x8010): u8 activation (1 relu, 2 tanh), u16 count, count × u32 widths.
public struct WireModelLayers: Sendable, Hashable {
    public enum Activation: UInt8, Sendable, Hashable {
        case relu = 1
        case tanh = 2
    }

    public var activation: Activation
    public var hidden: [UInt32]
    public init(activation: Activation, hidden: [UInt32]) {
        self.activation = activation
        self.hidden = hidden
    }
}

public struct WireModelSpec: Sendable, Hashable {
    public var kind: WireModelKind
    public var featureCount: UInt32
    public var outputCount: UInt32
    /// Set exactly when `kind` is `.mlp`.
    public var layers: WireModelLayers?
    /// Set exactly when `kind` is `.custom`.
    public var manifest: [WireTensorShape]?
    public init(kind: WireModelKind, featureCount: UInt32, outputCount: UInt32, layers: WireModelLayers? = nil,
                manifest: [WireTensorShape]? = nil) {
        self.kind = kind
        self.featureCount = featureCount
        self.outputCount = outputCount
        self.layers = layers
        self.manifest = manifest
    }
}

/// Agent to coordinator, first message after the TLS handshake.
public struct Hello: Sendable, Hashable {
    /// The largest hello payload a coordinator reads. The first frame of a connection must be a hello, and
    /// this keeps it below the frame budget's reservation threshold, so no reservation is possible before a
    /// peer says who it is; it holds the names of ~10,000 feature columns.
    public static let maxPayloadBytes = FrameBudget.defaultThreshold - 1

    /// The payload bytes this hello takes on the wire.
    public var payloadBytes: Int { WireCodec.encode(.hello(self)).readableBytes - 8 }   // less the 8-byte frame header

    public var agentVersion: String
    public var featureCount: UInt32
    public var trainSampleCount: UInt64
    public var evalSampleCount: UInt64
    /// Updates the agent holds from earlier sessions and will send again right after `welcome`.
    public var pendingUpdateCount: UInt32
    /// Option 1: the agent's feature column names, in order (empty: not sent).
    public var featureNames: [String]
    /// Option 2: what the agent can do (not sent when empty).
    public var capabilities: AgentCapabilities
    public init(agentVersion: String, featureCount: UInt32, trainSampleCount: UInt64, evalSampleCount: UInt64, pendingUpdateCount: UInt32,
                featureNames: [String] = [], capabilities: AgentCapabilities = []) {
        self.agentVersion = agentVersion
        self.featureCount = featureCount
        self.trainSampleCount = trainSampleCount
        self.evalSampleCount = evalSampleCount
        self.pendingUpdateCount = pendingUpdateCount
        self.featureNames = featureNames
        self.capabilities = capabilities
    }
}

/// Coordinator to agent, accepts the session.
public struct Welcome: Sendable, Hashable {
    /// The client id the coordinator derived from the agent's certificate.
    public var clientID: String
    public var sessionID: UInt64
    public var heartbeatIntervalMillis: UInt32
    public var maxFrameBytes: UInt32
    public var model: WireModelSpec
    /// Option 1: the feature names the model was fixed with (empty: not known or not sent).
    public var featureNames: [String]
    /// Option 0x8001 (critical): the federation's preprocessing, once fixed.
    public var preprocessing: WirePreprocessing?
    /// Option 2: the federation's id, fixed when the coordinator's state database was created (nil: not sent).
    public var federationID: UInt64?
    /// Option 3: the encoding the coordinator asks deltas to travel in (nil: float32).
    public var updateEncoding: DeltaEncoding?
    /// Option 4: the largest task or update payload that travels in parts (nil: none larger than a frame).
    public var maxMessageBytes: UInt64?
    /// Option 5: whether train tasks may come as differences from the previous one (nil: not said, they may).
    public var taskDifferences: Bool?
    public init(clientID: String, sessionID: UInt64, heartbeatIntervalMillis: UInt32, maxFrameBytes: UInt32, model: WireModelSpec,
                featureNames: [String] = [], preprocessing: WirePreprocessing? = nil, federationID: UInt64? = nil, updateEncoding: DeltaEncoding? = nil,
                maxMessageBytes: UInt64? = nil, taskDifferences: Bool? = nil) {
        self.maxMessageBytes = maxMessageBytes
        self.taskDifferences = taskDifferences
        self.federationID = federationID
        self.updateEncoding = updateEncoding
        self.clientID = clientID
        self.sessionID = sessionID
        self.heartbeatIntervalMillis = heartbeatIntervalMillis
        self.maxFrameBytes = maxFrameBytes
        self.model = model
        self.featureNames = featureNames
        self.preprocessing = preprocessing
    }
}

public enum TaskKind: UInt8, Sendable, Hashable {
    /// Evaluate the given model on the evaluation rows, train, send the delta.
    case train = 1
    /// Evaluate only; the update carries metrics and no tensors.
    case evaluate = 2
    /// Summarise the training rows (update option 1); no model, no training.
    case statistics = 3
}

public struct Hyperparameters: Sendable, Hashable {
    public var learningRate: Float
    public var batchSize: UInt32
    public var epochs: UInt32
    public var seed: UInt64
    public var proximalMu: Float
    public init(learningRate: Float, batchSize: UInt32, epochs: UInt32, seed: UInt64, proximalMu: Float) {
        self.learningRate = learningRate
        self.batchSize = batchSize
        self.epochs = epochs
        self.seed = seed
        self.proximalMu = proximalMu
    }
}

/// Coordinator to agent: a unit of work on model version `baseVersion`.
public struct TrainingTask: Sendable, Hashable {
    public var taskID: UInt64
    public var baseVersion: UInt64
    public var kind: TaskKind
    public var hyperparameters: Hyperparameters
    public var parameters: [WireTensor]
    /// Option 1 (critical): the preprocessing this model expects; the agent keeps it for the session.
    public var preprocessing: WirePreprocessing?
    /// Option 2 (critical): the parameters as a difference from an earlier train task's, in place of `parameters`.
    public var referencedParameters: ReferencedParameters?
    public init(taskID: UInt64, baseVersion: UInt64, kind: TaskKind, hyperparameters: Hyperparameters, parameters: [WireTensor],
                preprocessing: WirePreprocessing? = nil, referencedParameters: ReferencedParameters? = nil) {
        precondition(referencedParameters == nil || parameters.isEmpty, "referenced parameters replace the tensors")
        self.referencedParameters = referencedParameters
        self.taskID = taskID
        self.baseVersion = baseVersion
        self.kind = kind
        self.hyperparameters = hyperparameters
        self.parameters = parameters
        self.preprocessing = preprocessing
    }
}

/// Agent to coordinator: the result of a task. `(client, taskID)` is the idempotency key.
public struct Update: Sendable, Hashable {
    public var taskID: UInt64
    public var baseVersion: UInt64
    public var sampleCount: UInt64
    public var trainLoss: Float
    /// Metrics of the base model (the task's parameters) on the agent's evaluation rows.
    public var evalSampleCount: UInt64
    public var evalLoss: Float
    public var evalAccuracy: Float
    public var trainMillis: UInt32
    /// `x_local - x_base`, one tensor per model tensor; empty for evaluation tasks, and when the delta travels
    /// compressed (`compressedDelta`).
    public var delta: [WireTensor]
    /// Option 0x8004: the delta in a compressed encoding, in place of `delta`.
    public var compressedDelta: CompressedTensors?
    /// Option 1: the answer to a statistics task.
    public var statistics: WireDataStatistics?
    /// Option 2: sufficient statistics of the evaluation of the task's model.
    public var evaluation: WireEvaluationStatistics?
    /// Option 0x8003: the task could not be done (the agent's trainer failed), and why. Such an update carries
    /// no result: no tensors, and its metrics mean nothing.
    public var failure: String?
    /// Option 5: Σ ℓ_i² over the evaluation rows (`evalLoss` is the mean of the ℓ_i).
    public var evalLossSquares: Double?
    /// The delta's tensors when the receiver kept them on disk (`UpdateSpool`: an update that came in parts),
    /// in place of `delta`, which is then empty. Only a receiver makes it, and nothing sends it on: encoding an
    /// update writes `delta`.
    public var spooledDelta: SpooledTensors?
    public init(taskID: UInt64, baseVersion: UInt64, sampleCount: UInt64, trainLoss: Float, evalSampleCount: UInt64, evalLoss: Float, evalAccuracy: Float, trainMillis: UInt32, delta: [WireTensor],
                statistics: WireDataStatistics? = nil, evaluation: WireEvaluationStatistics? = nil, failure: String? = nil,
                compressedDelta: CompressedTensors? = nil, evalLossSquares: Double? = nil) {
        precondition(compressedDelta == nil || delta.isEmpty, "a compressed delta replaces the tensors")
        self.evalLossSquares = evalLossSquares
        self.compressedDelta = compressedDelta
        self.statistics = statistics
        self.failure = failure
        self.evaluation = evaluation
        self.taskID = taskID
        self.baseVersion = baseVersion
        self.sampleCount = sampleCount
        self.trainLoss = trainLoss
        self.evalSampleCount = evalSampleCount
        self.evalLoss = evalLoss
        self.evalAccuracy = evalAccuracy
        self.trainMillis = trainMillis
        self.delta = delta
    }

    /// The delta's bytes on the wire: its tensors (headers and values) or its compressed option's value.
    public var deltaWireBytes: Int {
        if let spooled = spooledDelta {
            return 2 + spooled.tensors.reduce(0) { $0 + WireTensor.headerSize(name: $1.name, rank: $1.shape.count) + 4 * $1.elementCount }
        }
        return compressedDelta?.encodedSize ?? WireTensor.wireSize(of: delta)
    }

    /// The answer to a task that could not be done: no tensors, no counts, the reason (cut to
    /// `WireLimits.maxFailureBytes` at a character boundary).
    public static func failed(_ taskID: UInt64, baseVersion: UInt64, reason: String) -> Update {
        var text = Substring(reason)
        while text.utf8.count > WireLimits.maxFailureBytes { text = text.dropLast() }
        return Update(taskID: taskID, baseVersion: baseVersion, sampleCount: 0, trainLoss: 0, evalSampleCount: 0, evalLoss: 0,
                      evalAccuracy: 0, trainMillis: 0, delta: [], failure: String(text))
    }
}

public enum AckStatus: UInt8, Sendable, Hashable {
    /// Validated and folded into an open buffer; not yet durable. Keep the update.
    case received = 1
    /// Part of a durably written model version. The agent may delete the update.
    case committed = 2
    /// Refused for the reason given; it will never be aggregated. The agent deletes it and logs the reason.
    case refused = 3
}

public struct Ack: Sendable, Hashable {
    public var taskID: UInt64
    public var status: AckStatus
    /// committed: the model version that includes the update; otherwise the coordinator's current version.
    public var modelVersion: UInt64
    /// Zero unless refused.
    public var code: ErrorCode
    public var reason: String
    public init(taskID: UInt64, status: AckStatus, modelVersion: UInt64, code: ErrorCode = ErrorCode(rawValue: 0), reason: String = "") {
        self.taskID = taskID
        self.status = status
        self.modelVersion = modelVersion
        self.code = code
        self.reason = reason
    }
}

/// Either side, at any time after `welcome`. A heartbeat with `isReply == false` is answered by one
/// with `isReply == true` carrying the same sequence and timestamp.
public struct Heartbeat: Sendable, Hashable {
    public var sequence: UInt64
    /// Sender's monotonic clock in nanoseconds, echoed unchanged in the reply.
    public var timestampNanos: UInt64
    public var isReply: Bool
    public init(sequence: UInt64, timestampNanos: UInt64, isReply: Bool) {
        self.sequence = sequence
        self.timestampNanos = timestampNanos
        self.isReply = isReply
    }
}

/// Fatal: the sender closes the connection after it.
public struct ErrorMessage: Sendable, Hashable, Error {
    public var code: ErrorCode
    public var message: String
    public init(code: ErrorCode, message: String) {
        self.code = code
        self.message = message
    }
}

public enum GoodbyeReason: UInt16, Sendable, Hashable {
    case normal = 0
    case shuttingDown = 1
    case targetReached = 2
    case evicted = 3
    /// A newer session with the same client id (certificate CN) replaced this one. Never a permanent
    /// exit: `retryAfterMillis` is always positive.
    case replaced = 4
}

/// Orderly end of a session. `retryAfterMillis == 0` means "do not come back".
public struct Goodbye: Sendable, Hashable {
    public var reason: GoodbyeReason
    public var retryAfterMillis: UInt32
    public var message: String
    public init(reason: GoodbyeReason, retryAfterMillis: UInt32, message: String) {
        self.reason = reason
        self.retryAfterMillis = retryAfterMillis
        self.message = message
    }
}

public enum Message: Sendable, Hashable {
    case hello(Hello)
    case welcome(Welcome)
    case task(TrainingTask)
    case update(Update)
    case ack(Ack)
    case heartbeat(Heartbeat)
    case error(ErrorMessage)
    case goodbye(Goodbye)
    case part(MessagePart)

    public var type: MessageType {
        switch self {
        case .hello: .hello
        case .welcome: .welcome
        case .task: .task
        case .update: .update
        case .ack: .ack
        case .heartbeat: .heartbeat
        case .error: .error
        case .goodbye: .goodbye
        case .part: .part
        }
    }
}
