import NIOCore

/// Frame layout (all integers little-endian):
///
///     offset  size  field
///     0       2     magic "ST" (0x53 0x54)
///     2       1     protocol version (1)
///     3       1     message type
///     4       4     payload length in bytes (u32), excluding this 8-byte header
///     8       n     payload
public enum FrameHeader {
    public static let size = 8
    public static let magic: UInt16 = 0x5453  // "ST" read as little-endian u16
    public static let defaultMaxPayloadBytes = 64 * 1024 * 1024
}

public enum WireLimits {
    public static let maxTensorRank = 8
    public static let maxTensorsPerMessage = 1024
    /// A failed task's reason (update option 0x8003), in UTF-8 bytes.
    public static let maxFailureBytes = 1024
}

public enum WireCodec {
    /// Appends one complete frame holding `message` to `buffer`.
    public static func encode(_ message: Message, into buffer: inout ByteBuffer) {
        let headerStart = buffer.writerIndex
        buffer.writeInteger(FrameHeader.magic, endianness: .little)
        buffer.writeInteger(ProtocolVersion.current)
        buffer.writeInteger(message.type.rawValue)
        buffer.writeInteger(UInt32(0), endianness: .little)  // patched below
        let payloadStart = buffer.writerIndex
        encodePayload(message, into: &buffer)
        let length = buffer.writerIndex - payloadStart
        precondition(length <= UInt32.max, "payload too large for a frame")
        buffer.setInteger(UInt32(length), at: headerStart + 4, endianness: .little)
    }

    public static func encode(_ message: Message) -> ByteBuffer {
        var buffer = ByteBufferAllocator().buffer(capacity: FrameHeader.size + estimatedPayloadSize(message))
        encode(message, into: &buffer)
        return buffer
    }

    /// Encodes `message` as one frame split into consecutive buffers whose concatenation is exactly
    /// `encode(message)`, without copying the values of tensors of at least `sharedTensorBytes` bytes: those
    /// pieces are the tensors' own buffers. A model broadcast to many sessions is thus serialized once (its
    /// `WireTensor`s) and every session's frame shares those bytes; only the few bytes of header are per frame.
    public static func encodePieces(_ message: Message, allocator: ByteBufferAllocator = ByteBufferAllocator(),
                                    sharedTensorBytes: Int = 16 * 1024) -> [ByteBuffer] {
        let tensors: [WireTensor]
        switch message {
        case .task(let task): tensors = task.parameters
        case .update(let update): tensors = update.delta
        default: tensors = []
        }
        guard tensors.contains(where: { $0.bytes.readableBytes >= sharedTensorBytes }) else {
            var buffer = allocator.buffer(capacity: FrameHeader.size + estimatedPayloadSize(message))
            encode(message, into: &buffer)
            return [buffer]
        }
        precondition(tensors.count <= WireLimits.maxTensorsPerMessage)
        var pieces: [ByteBuffer] = []
        var current = allocator.buffer(capacity: 256)
        current.writeInteger(FrameHeader.magic, endianness: .little)
        current.writeInteger(ProtocolVersion.current)
        current.writeInteger(message.type.rawValue)
        current.writeInteger(UInt32(0), endianness: .little)  // patched below
        encodeFieldsBeforeTensors(message, into: &current)
        current.writeInteger(UInt16(tensors.count), endianness: .little)
        for tensor in tensors {
            current.writeWireTensorHeader(tensor)
            if tensor.bytes.readableBytes >= sharedTensorBytes {
                pieces.append(current)
                pieces.append(tensor.bytes)
                current = allocator.buffer(capacity: 256)
            } else {
                current.writeImmutableBuffer(tensor.bytes)
            }
        }
        encodeOptions(message, into: &current)
        if current.readableBytes > 0 { pieces.append(current) }
        let length = pieces.reduce(0) { $0 + $1.readableBytes } - FrameHeader.size
        precondition(length <= UInt32.max, "payload too large for a frame")
        pieces[0].setInteger(UInt32(length), at: pieces[0].readerIndex + 4, endianness: .little)
        return pieces
    }

    /// Decodes one frame from the front of `buffer` if it holds a whole one; returns nil (consuming
    /// nothing) when more bytes are needed. The header is validated, and the declared length checked
    /// against `maxPayloadBytes`, before any payload is read or allocated.
    public static func decodeFrame(from buffer: inout ByteBuffer, maxPayloadBytes: Int) throws(WireError) -> Message? {
        guard let (type, length) = try checkedHeader(buffer, maxPayloadBytes: maxPayloadBytes),
              buffer.readableBytes >= FrameHeader.size + length else { return nil }
        buffer.moveReaderIndex(forwardBy: FrameHeader.size)
        var payload = buffer.readView(length: length)!
        return try decodePayload(type: type, from: &payload)
    }

    /// The type and payload length of the frame `buffer` starts, once its 8-byte header is here (nil before),
    /// validated as `decodeFrame` validates it: magic (checked from its first two bytes), version, type, and the
    /// length against `maxPayloadBytes`. Receivers call it before looking further into a frame, so that what they
    /// refuse never depends on how the bytes were split into reads.
    public static func checkedHeader(_ buffer: ByteBuffer, maxPayloadBytes: Int) throws(WireError) -> (type: MessageType, length: Int)? {
        guard buffer.readableBytes >= FrameHeader.size else {
            // Reject a wrong magic as soon as its two bytes are here, so a non-Strata peer fails fast.
            if buffer.readableBytes >= 2, let magic = buffer.getInteger(at: buffer.readerIndex, endianness: .little, as: UInt16.self), magic != FrameHeader.magic {
                throw .badMagic(magic)
            }
            return nil
        }
        let start = buffer.readerIndex
        let magic = buffer.getInteger(at: start, endianness: .little, as: UInt16.self)!
        guard magic == FrameHeader.magic else { throw .badMagic(magic) }
        let version = buffer.getInteger(at: start + 2, as: UInt8.self)!
        guard version == ProtocolVersion.current else { throw .unsupportedVersion(version) }
        let typeByte = buffer.getInteger(at: start + 3, as: UInt8.self)!
        guard let type = MessageType(rawValue: typeByte) else { throw .unknownMessageType(typeByte) }
        let length = Int(buffer.getInteger(at: start + 4, endianness: .little, as: UInt32.self)!)
        guard length <= maxPayloadBytes else { throw .frameTooLarge(length: length, limit: maxPayloadBytes) }
        return (type, length)
    }

    /// Decodes an update frame an agent stored before sending it. A frame stored by a protocol-1 agent (the
    /// same fields, no options section) is read as the protocol-2 update it is.
    public static func decodeStoredUpdate(_ bytes: some Collection<UInt8>) throws(WireError) -> Message {
        var frame = ByteBuffer(bytes: bytes)
        if frame.readableBytes >= FrameHeader.size, frame.getInteger(at: frame.readerIndex + 2, as: UInt8.self) == 1,
           frame.getInteger(at: frame.readerIndex + 3, as: UInt8.self) == MessageType.update.rawValue,
           let length = frame.getInteger(at: frame.readerIndex + 4, endianness: .little, as: UInt32.self), length < UInt32.max - 2 {
            frame.setInteger(ProtocolVersion.current, at: frame.readerIndex + 2)
            frame.setInteger(length + 2, at: frame.readerIndex + 4, endianness: .little)
            frame.writeInteger(UInt16(0), endianness: .little)
        }
        guard let message = try decodeFrame(from: &frame, maxPayloadBytes: Int(UInt32.max)) else {
            throw .incompleteFrameAtEOF(bufferedBytes: frame.readableBytes)
        }
        return message
    }

    /// Decodes a payload that must hold exactly one message of `type`.
    public static func decodePayload(type: MessageType, from payload: inout ByteBuffer) throws(WireError) -> Message {
        var reader = PayloadReader(buffer: payload)
        let message: Message
        switch type {
        case .hello:
            var hello = Hello(
                agentVersion: try reader.string("hello.agentVersion"),
                featureCount: try reader.u32("hello.featureCount"),
                trainSampleCount: try reader.u64("hello.trainSampleCount"),
                evalSampleCount: try reader.u64("hello.evalSampleCount"),
                pendingUpdateCount: try reader.u32("hello.pendingUpdateCount"))
            let options = try reader.options("hello.options", known: [WireOptionKey.helloFeatureNames, WireOptionKey.helloCapabilities])
            if let value = options[WireOptionKey.helloFeatureNames] {
                hello.featureNames = try decodeOption(value, "hello.featureNames") { (r: inout PayloadReader) throws(WireError) in try r.featureNames("hello.featureNames") }
            }
            if let value = options[WireOptionKey.helloCapabilities] {
                hello.capabilities = AgentCapabilities(rawValue: try decodeOption(value, "hello.capabilities") { (r: inout PayloadReader) throws(WireError) in try r.u64("hello.capabilities") })
            }
            message = .hello(hello)
        case .welcome:
            let clientID = try reader.string("welcome.clientID")
            let sessionID = try reader.u64("welcome.sessionID")
            let heartbeat = try reader.u32("welcome.heartbeatIntervalMillis")
            let maxFrame = try reader.u32("welcome.maxFrameBytes")
            let kindByte = try reader.u8("welcome.model.kind")
            guard let kind = WireModelKind(rawValue: kindByte) else {
                throw .invalidValue(field: "welcome.model.kind", reason: "unknown model kind \(kindByte)")
            }
            let spec = WireModelSpec(kind: kind, featureCount: try reader.u32("welcome.model.featureCount"), outputCount: try reader.u32("welcome.model.outputCount"))
            var welcome = Welcome(clientID: clientID, sessionID: sessionID, heartbeatIntervalMillis: heartbeat, maxFrameBytes: maxFrame, model: spec)
            let options = try reader.options("welcome.options", known: [WireOptionKey.welcomeFeatureNames, WireOptionKey.welcomeFederation, WireOptionKey.welcomePreprocessing,
                                                                        WireOptionKey.welcomeModelLayers, WireOptionKey.welcomeModelManifest,
                                                                        WireOptionKey.welcomeUpdateEncoding, WireOptionKey.welcomeMaxMessageBytes,
                                                                        WireOptionKey.welcomeTaskDifferences])
            if let value = options[WireOptionKey.welcomeUpdateEncoding] {
                welcome.updateEncoding = try decodeOption(value, "welcome.updateEncoding") { (r: inout PayloadReader) throws(WireError) in try r.updateEncoding("welcome.updateEncoding") }
            }
            if let value = options[WireOptionKey.welcomeModelLayers] {
                welcome.model.layers = try decodeOption(value, "welcome.modelLayers") { (r: inout PayloadReader) throws(WireError) in try r.modelLayers("welcome.modelLayers") }
            }
            if let value = options[WireOptionKey.welcomeModelManifest] {
                welcome.model.manifest = try decodeOption(value, "welcome.modelManifest") { (r: inout PayloadReader) throws(WireError) in try r.modelManifest("welcome.modelManifest") }
            }
            guard (welcome.model.kind == .custom) == (welcome.model.manifest != nil) else {
                throw .invalidValue(field: "welcome.modelManifest", reason: welcome.model.kind == .custom
                                    ? "a custom model needs its manifest (option 0x8011)" : "a manifest given for a built-in model kind")
            }
            guard (welcome.model.kind == .mlp) == (welcome.model.layers != nil) else {
                throw .invalidValue(field: "welcome.modelLayers", reason: welcome.model.kind == .mlp
                                    ? "an mlp model needs its layers (option 0x8010)" : "layers given for a model kind without hidden layers")
            }
            if let value = options[WireOptionKey.welcomeFeatureNames] {
                welcome.featureNames = try decodeOption(value, "welcome.featureNames") { (r: inout PayloadReader) throws(WireError) in try r.featureNames("welcome.featureNames") }
            }
            if let value = options[WireOptionKey.welcomeFederation] {
                welcome.federationID = try decodeOption(value, "welcome.federation") { (r: inout PayloadReader) throws(WireError) in try r.u64("welcome.federation") }
            }
            if let value = options[WireOptionKey.welcomeMaxMessageBytes] {
                welcome.maxMessageBytes = try decodeOption(value, "welcome.maxMessageBytes") { (r: inout PayloadReader) throws(WireError) in try r.u64("welcome.maxMessageBytes") }
            }
            if let value = options[WireOptionKey.welcomeTaskDifferences] {
                welcome.taskDifferences = try decodeOption(value, "welcome.taskDifferences") { (r: inout PayloadReader) throws(WireError) in
                    let flag = try r.u8("welcome.taskDifferences")
                    guard flag <= 1 else { throw .invalidValue(field: "welcome.taskDifferences", reason: "must be 0 or 1, got \(flag)") }
                    return flag == 1
                }
            }
            if let value = options[WireOptionKey.welcomePreprocessing] {
                welcome.preprocessing = try decodeOption(value, "welcome.preprocessing") { (r: inout PayloadReader) throws(WireError) in try r.preprocessing("welcome.preprocessing") }
            }
            message = .welcome(welcome)
        case .task:
            let taskID = try reader.u64("task.taskID")
            let base = try reader.u64("task.baseVersion")
            let kindByte = try reader.u8("task.kind")
            guard let kind = TaskKind(rawValue: kindByte) else {
                throw .invalidValue(field: "task.kind", reason: "unknown task kind \(kindByte)")
            }
            let hyper = Hyperparameters(
                learningRate: try reader.f32("task.learningRate"),
                batchSize: try reader.u32("task.batchSize"),
                epochs: try reader.u32("task.epochs"),
                seed: try reader.u64("task.seed"),
                proximalMu: try reader.f32("task.proximalMu"))
            var task = TrainingTask(taskID: taskID, baseVersion: base, kind: kind, hyperparameters: hyper, parameters: try reader.tensors("task.parameters"))
            let options = try reader.options("task.options", known: [WireOptionKey.taskPreprocessing, WireOptionKey.taskReferencedParameters])
            if let value = options[WireOptionKey.taskPreprocessing] {
                task.preprocessing = try decodeOption(value, "task.preprocessing") { (r: inout PayloadReader) throws(WireError) in try r.preprocessing("task.preprocessing") }
            }
            if let value = options[WireOptionKey.taskReferencedParameters] {
                guard task.kind == .train, task.parameters.isEmpty else {
                    throw .invalidValue(field: "task.referencedParameters", reason: "only a train task with an empty parameters field carries it")
                }
                task.referencedParameters = try decodeOption(value, "task.referencedParameters") { (r: inout PayloadReader) throws(WireError) in
                    try r.referencedParameters("task.referencedParameters")
                }
            }
            message = .task(task)
        case .update:
            message = .update(try reader.update { (r: inout PayloadReader) throws(WireError) in try r.tensors("update.delta") })
        case .ack:
            let taskID = try reader.u64("ack.taskID")
            let statusByte = try reader.u8("ack.status")
            guard let status = AckStatus(rawValue: statusByte) else {
                throw .invalidValue(field: "ack.status", reason: "unknown status \(statusByte)")
            }
            message = .ack(Ack(taskID: taskID, status: status, modelVersion: try reader.u64("ack.modelVersion"),
                               code: ErrorCode(rawValue: try reader.u16("ack.code")), reason: try reader.string("ack.reason")))
            _ = try reader.options("ack.options", known: [])
        case .heartbeat:
            let sequence = try reader.u64("heartbeat.sequence")
            let timestamp = try reader.u64("heartbeat.timestampNanos")
            let flags = try reader.u8("heartbeat.flags")
            guard flags & ~1 == 0 else { throw .invalidValue(field: "heartbeat.flags", reason: "reserved bits set (0x\(String(flags, radix: 16)))") }
            message = .heartbeat(Heartbeat(sequence: sequence, timestampNanos: timestamp, isReply: flags & 1 == 1))
            _ = try reader.options("heartbeat.options", known: [])
        case .error:
            message = .error(ErrorMessage(code: ErrorCode(rawValue: try reader.u16("error.code")), message: try reader.string("error.message")))
            _ = try reader.options("error.options", known: [])
        case .part:
            message = .part(try reader.part())
            _ = try reader.options("part.options", known: [])
        case .goodbye:
            let reasonValue = try reader.u16("goodbye.reason")
            guard let reason = GoodbyeReason(rawValue: reasonValue) else {
                throw .invalidValue(field: "goodbye.reason", reason: "unknown reason \(reasonValue)")
            }
            message = .goodbye(Goodbye(reason: reason, retryAfterMillis: try reader.u32("goodbye.retryAfterMillis"), message: try reader.string("goodbye.message")))
            _ = try reader.options("goodbye.options", known: [])
        }
        guard reader.buffer.readableBytes == 0 else {
            throw .trailingBytes(count: reader.buffer.readableBytes, messageType: type.rawValue)
        }
        return message
    }

    static func estimatedPayloadSize(_ message: Message) -> Int {
        switch message {
        case .task(let task): return 64 + task.parameters.reduce(0) { $0 + 64 + $1.bytes.readableBytes } + (task.referencedParameters?.encodedSize ?? 0)
        case .update(let update): return 96 + update.delta.reduce(0) { $0 + 64 + $1.bytes.readableBytes } + (update.compressedDelta?.encodedSize ?? 0)
        case .part(let part): return MessagePart.fieldBytes + part.bytes.readableBytes + 2
        default: return 128
        }
    }

    /// The fields of a task or update that precede its tensors (nothing for other messages).
    static func encodeFieldsBeforeTensors(_ message: Message, into buffer: inout ByteBuffer) {
        switch message {
        case .task(let m):
            buffer.writeInteger(m.taskID, endianness: .little)
            buffer.writeInteger(m.baseVersion, endianness: .little)
            buffer.writeInteger(m.kind.rawValue)
            buffer.writeInteger(m.hyperparameters.learningRate.bitPattern, endianness: .little)
            buffer.writeInteger(m.hyperparameters.batchSize, endianness: .little)
            buffer.writeInteger(m.hyperparameters.epochs, endianness: .little)
            buffer.writeInteger(m.hyperparameters.seed, endianness: .little)
            buffer.writeInteger(m.hyperparameters.proximalMu.bitPattern, endianness: .little)
        case .update(let m):
            buffer.writeInteger(m.taskID, endianness: .little)
            buffer.writeInteger(m.baseVersion, endianness: .little)
            buffer.writeInteger(m.sampleCount, endianness: .little)
            buffer.writeInteger(m.trainLoss.bitPattern, endianness: .little)
            buffer.writeInteger(m.evalSampleCount, endianness: .little)
            buffer.writeInteger(m.evalLoss.bitPattern, endianness: .little)
            buffer.writeInteger(m.evalAccuracy.bitPattern, endianness: .little)
            buffer.writeInteger(m.trainMillis, endianness: .little)
        default:
            break
        }
    }

    static func encodePayload(_ message: Message, into buffer: inout ByteBuffer) {
        switch message {
        case .hello(let m):
            buffer.writeWireString(m.agentVersion)
            buffer.writeInteger(m.featureCount, endianness: .little)
            buffer.writeInteger(m.trainSampleCount, endianness: .little)
            buffer.writeInteger(m.evalSampleCount, endianness: .little)
            buffer.writeInteger(m.pendingUpdateCount, endianness: .little)
        case .welcome(let m):
            buffer.writeWireString(m.clientID)
            buffer.writeInteger(m.sessionID, endianness: .little)
            buffer.writeInteger(m.heartbeatIntervalMillis, endianness: .little)
            buffer.writeInteger(m.maxFrameBytes, endianness: .little)
            buffer.writeInteger(m.model.kind.rawValue)
            buffer.writeInteger(m.model.featureCount, endianness: .little)
            buffer.writeInteger(m.model.outputCount, endianness: .little)
        case .task(let m):
            encodeFieldsBeforeTensors(message, into: &buffer)
            buffer.writeWireTensors(m.parameters)
        case .update(let m):
            encodeFieldsBeforeTensors(message, into: &buffer)
            buffer.writeWireTensors(m.delta)
        case .ack(let m):
            buffer.writeInteger(m.taskID, endianness: .little)
            buffer.writeInteger(m.status.rawValue)
            buffer.writeInteger(m.modelVersion, endianness: .little)
            buffer.writeInteger(m.code.rawValue, endianness: .little)
            buffer.writeWireString(m.reason)
        case .heartbeat(let m):
            buffer.writeInteger(m.sequence, endianness: .little)
            buffer.writeInteger(m.timestampNanos, endianness: .little)
            buffer.writeInteger(UInt8(m.isReply ? 1 : 0))
        case .error(let m):
            buffer.writeInteger(m.code.rawValue, endianness: .little)
            buffer.writeWireString(m.message)
        case .goodbye(let m):
            buffer.writeInteger(m.reason.rawValue, endianness: .little)
            buffer.writeInteger(m.retryAfterMillis, endianness: .little)
            buffer.writeWireString(m.message)
        case .part(let m):
            m.writeFields(into: &buffer)
            buffer.writeImmutableBuffer(m.bytes)
        }
        encodeOptions(message, into: &buffer)
    }

    /// The options section that ends every message (docs/PROTOCOL.md §2), in ascending key order.
    static func encodeOptions(_ message: Message, into buffer: inout ByteBuffer) {
        var options: [(UInt16, (inout ByteBuffer) -> Void)] = []
        switch message {
        case .hello(let m):
            if !m.featureNames.isEmpty { options.append((WireOptionKey.helloFeatureNames, { $0.writeFeatureNames(m.featureNames) })) }
            if !m.capabilities.isEmpty { options.append((WireOptionKey.helloCapabilities, { $0.writeInteger(m.capabilities.rawValue, endianness: .little) })) }
        case .welcome(let m):
            if !m.featureNames.isEmpty { options.append((WireOptionKey.welcomeFeatureNames, { $0.writeFeatureNames(m.featureNames) })) }
            if let id = m.federationID { options.append((WireOptionKey.welcomeFederation, { $0.writeInteger(id, endianness: .little) })) }
            if let encoding = m.updateEncoding, let kind = encoding.kind {
                options.append((WireOptionKey.welcomeUpdateEncoding, {
                    $0.writeInteger(kind.rawValue)
                    if case .topK(let fraction) = encoding { $0.writeInteger(fraction.bitPattern, endianness: .little) } else { $0.writeInteger(UInt32(0), endianness: .little) }
                }))
            }
            if let limit = m.maxMessageBytes { options.append((WireOptionKey.welcomeMaxMessageBytes, { $0.writeInteger(limit, endianness: .little) })) }
            if let differences = m.taskDifferences { options.append((WireOptionKey.welcomeTaskDifferences, { $0.writeInteger(UInt8(differences ? 1 : 0)) })) }
            if let p = m.preprocessing { options.append((WireOptionKey.welcomePreprocessing, { $0.writePreprocessing(p) })) }
            if let layers = m.model.layers { options.append((WireOptionKey.welcomeModelLayers, { $0.writeModelLayers(layers) })) }
            if let manifest = m.model.manifest { options.append((WireOptionKey.welcomeModelManifest, { $0.writeModelManifest(manifest) })) }
        case .task(let m):
            if let p = m.preprocessing { options.append((WireOptionKey.taskPreprocessing, { $0.writePreprocessing(p) })) }
            if let r = m.referencedParameters { options.append((WireOptionKey.taskReferencedParameters, { $0.writeReferencedParameters(r) })) }
        case .update(let m):
            if let s = m.statistics { options.append((WireOptionKey.updateStatistics, { $0.writeDataStatistics(s) })) }
            if let e = m.evaluation { options.append((WireOptionKey.updateEvaluation, { $0.writeEvaluationStatistics(e) })) }
            if let q = m.evalLossSquares { options.append((WireOptionKey.updateLossSquares, { $0.writeInteger(q.bitPattern, endianness: .little) })) }
            if let f = m.failure { options.append((WireOptionKey.updateFailure, { $0.writeWireString(f) })) }
            if let c = m.compressedDelta { options.append((WireOptionKey.updateCompressedDelta, { $0.writeCompressedTensors(c) })) }
        case .ack, .heartbeat, .error, .goodbye, .part:
            break
        }
        buffer.writeWireOptions(options)
    }
}

extension ByteBuffer {
    /// u16 byte length, then UTF-8. Longer strings are cut at a character boundary to fit.
    mutating func writeWireString(_ string: String) {
        var utf8 = Array(string.utf8)
        if utf8.count > Int(UInt16.max) {
            var cut = Substring(string)
            while cut.utf8.count > Int(UInt16.max) { cut = cut.dropLast() }
            utf8 = Array(cut.utf8)
        }
        writeInteger(UInt16(utf8.count), endianness: .little)
        writeBytes(utf8)
    }

    mutating func writeWireTensors(_ tensors: [WireTensor]) {
        precondition(tensors.count <= WireLimits.maxTensorsPerMessage)
        writeInteger(UInt16(tensors.count), endianness: .little)
        for tensor in tensors {
            writeWireTensorHeader(tensor)
            writeImmutableBuffer(tensor.bytes)
        }
    }

    /// A tensor's name, rank and shape: everything of it but its values.
    mutating func writeWireTensorHeader(_ tensor: WireTensor) {
        precondition(tensor.shape.count <= WireLimits.maxTensorRank && tensor.bytes.readableBytes == tensor.elementCount * 4)
        writeWireString(tensor.name)
        writeInteger(UInt8(tensor.shape.count))
        for dim in tensor.shape { writeInteger(UInt32(dim), endianness: .little) }
    }
}

/// Reads fields off a payload, naming the field in every error.
struct PayloadReader {
    var buffer: ByteBuffer

    mutating func u8(_ field: String) throws(WireError) -> UInt8 {
        guard let v = buffer.readInteger(as: UInt8.self) else { throw .truncated(field: field) }
        return v
    }
    mutating func u16(_ field: String) throws(WireError) -> UInt16 {
        guard let v = buffer.readInteger(endianness: .little, as: UInt16.self) else { throw .truncated(field: field) }
        return v
    }
    mutating func u32(_ field: String) throws(WireError) -> UInt32 {
        guard let v = buffer.readInteger(endianness: .little, as: UInt32.self) else { throw .truncated(field: field) }
        return v
    }
    mutating func u64(_ field: String) throws(WireError) -> UInt64 {
        guard let v = buffer.readInteger(endianness: .little, as: UInt64.self) else { throw .truncated(field: field) }
        return v
    }
    mutating func f32(_ field: String) throws(WireError) -> Float {
        Float(bitPattern: try u32(field))
    }
    mutating func string(_ field: String) throws(WireError) -> String {
        let length = Int(try u16(field + ".length"))
        guard let bytes = buffer.readSlice(length: length) else { throw .truncated(field: field) }
        guard let string = bytes.getString(at: bytes.readerIndex, length: length).flatMap({ s -> String? in
            // getString repairs invalid UTF-8; compare bytes to detect it.
            Array(s.utf8) == bytes.getBytes(at: bytes.readerIndex, length: length)! ? s : nil
        }) else {
            throw .invalidValue(field: field, reason: "not valid UTF-8")
        }
        return string
    }
    /// A tensor list's count (at most `WireLimits.maxTensorsPerMessage`).
    mutating func tensorCount(_ field: String) throws(WireError) -> Int {
        let count = Int(try u16(field + ".count"))
        guard count <= WireLimits.maxTensorsPerMessage else {
            throw .invalidValue(field: field + ".count", reason: "\(count) tensors exceeds the limit of \(WireLimits.maxTensorsPerMessage)")
        }
        return count
    }

    /// A tensor's name, rank and shape, with its element count checked without overflow against `maxElements`
    /// (`overLimit` names the failure) before anything is allocated for its values.
    mutating func tensorHeader(_ prefix: String, maxElements: Int, overLimit: WireError) throws(WireError) -> (name: String, shape: [Int], elements: Int) {
        let name = try string(prefix + ".name")
        let rank = Int(try u8(prefix + ".rank"))
        guard rank <= WireLimits.maxTensorRank else {
            throw .invalidValue(field: prefix + ".rank", reason: "rank \(rank) exceeds \(WireLimits.maxTensorRank)")
        }
        var shape: [Int] = []
        shape.reserveCapacity(rank)
        var elements = 1
        for d in 0..<rank {
            let dim = Int(try u32(prefix + ".shape[\(d)]"))
            let (product, overflow) = elements.multipliedReportingOverflow(by: dim)
            guard !overflow, product <= maxElements else { throw overLimit }
            elements = product
            shape.append(dim)
        }
        return (name, shape, elements)
    }

    mutating func tensors(_ field: String) throws(WireError) -> [WireTensor] {
        let count = try tensorCount(field)
        var tensors: [WireTensor] = []
        tensors.reserveCapacity(count)
        for index in 0..<count {
            let prefix = "\(field)[\(index)]"
            let (name, shape, elements) = try tensorHeader(prefix, maxElements: buffer.readableBytes / 4, overLimit: .truncated(field: prefix + ".data"))
            guard let bytes = buffer.readView(length: elements * 4) else { throw .truncated(field: prefix + ".data") }
            tensors.append(WireTensor(name: name, shape: shape, bytes: bytes))
        }
        return tensors
    }
}

extension PayloadReader {
    /// An update's fields, tensors and options. `tensors` reads the tensors field: in place (`tensors`), or,
    /// for an update spooled to disk, from its file, leaving this reader on the options that follow them.
    mutating func update(tensors: (inout PayloadReader) throws(WireError) -> [WireTensor]) throws(WireError) -> Update {
        var update = Update(
            taskID: try u64("update.taskID"),
            baseVersion: try u64("update.baseVersion"),
            sampleCount: try u64("update.sampleCount"),
            trainLoss: try f32("update.trainLoss"),
            evalSampleCount: try u64("update.evalSampleCount"),
            evalLoss: try f32("update.evalLoss"),
            evalAccuracy: try f32("update.evalAccuracy"),
            trainMillis: try u32("update.trainMillis"),
            delta: try tensors(&self))
        let found = try options("update.options", known: [WireOptionKey.updateStatistics, WireOptionKey.updateEvaluation, WireOptionKey.updateFailure,
                                                          WireOptionKey.updateCompressedDelta, WireOptionKey.updateLossSquares])
        if let value = found[WireOptionKey.updateCompressedDelta] {
            guard update.delta.isEmpty else {
                throw .invalidValue(field: "update.compressedDelta", reason: "a compressed delta comes with an empty tensors field, not \(update.delta.count) tensors")
            }
            update.compressedDelta = try decodeOption(value, "update.compressedDelta") { (r: inout PayloadReader) throws(WireError) in try r.compressedTensors("update.compressedDelta") }
        }
        if let value = found[WireOptionKey.updateStatistics] {
            update.statistics = try decodeOption(value, "update.statistics") { (r: inout PayloadReader) throws(WireError) in try r.dataStatistics("update.statistics") }
        }
        if let value = found[WireOptionKey.updateEvaluation] {
            update.evaluation = try decodeOption(value, "update.evaluation") { (r: inout PayloadReader) throws(WireError) in try r.evaluationStatistics("update.evaluation") }
        }
        if let value = found[WireOptionKey.updateLossSquares] {
            update.evalLossSquares = try decodeOption(value, "update.lossSquares") { (r: inout PayloadReader) throws(WireError) in try r.f64("update.lossSquares") }
        }
        if let value = found[WireOptionKey.updateFailure] {
            update.failure = try decodeOption(value, "update.failure") { (r: inout PayloadReader) throws(WireError) in
                let reason = try r.string("update.failure")
                guard reason.utf8.count <= WireLimits.maxFailureBytes else {
                    throw .invalidValue(field: "update.failure", reason: "\(reason.utf8.count) bytes exceeds the limit of \(WireLimits.maxFailureBytes)")
                }
                return reason
            }
        }
        return update
    }
}
