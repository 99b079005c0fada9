import Foundation
import NIOCore
import StrataCore
import StrataWire

/// The seed inputs of Fuzz/corpus, from real encoded messages: `strata-fuzz make-seeds DIR` writes them
/// (libFuzzer then grows and `-merge=1` minimises the corpus around them).
public enum Seeds {
    /// One message of each of the 8 types, with tensors where the type has them.
    static func messages() -> [(String, Message)] {
        let spec = ModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 2)
        let parameters = ModelTensors.encode([0.5, -1, 2, 0.25, 1, -2], spec: spec)
        return [
            ("hello", .hello(Hello(agentVersion: "strata-agent 1.0", featureCount: 60, trainSampleCount: 1200, evalSampleCount: 300, pendingUpdateCount: 2))),
            ("welcome", .welcome(Welcome(clientID: "hospital-a", sessionID: 3, heartbeatIntervalMillis: 2000, maxFrameBytes: 64 << 20,
                                         model: WireModelSpec(kind: .softmaxRegression, featureCount: 60, outputCount: 10)))),
            ("task", .task(TrainingTask(taskID: 12, baseVersion: 4, kind: .train,
                                        hyperparameters: Hyperparameters(learningRate: 0.01, batchSize: 10, epochs: 2, seed: 99, proximalMu: 0.1),
                                        parameters: parameters))),
            ("update", .update(Update(taskID: 12, baseVersion: 4, sampleCount: 120, trainLoss: 0.7, evalSampleCount: 30, evalLoss: 0.9,
                                      evalAccuracy: 0.6, trainMillis: 850, delta: parameters))),
            ("ack", .ack(Ack(taskID: 12, status: .refused, modelVersion: 5, code: .shapeMismatch, reason: "expected 2 tensors, got 1"))),
            ("heartbeat", .heartbeat(Heartbeat(sequence: 17, timestampNanos: 123_456_789, isReply: true))),
            ("error", .error(ErrorMessage(code: .frameTooLarge, message: "frame payload of 70000000 bytes exceeds the limit"))),
            ("goodbye", .goodbye(Goodbye(reason: .shuttingDown, retryAfterMillis: 5000, message: "coordinator is shutting down"))),
        ]
    }

    /// The worked examples of docs/PROTOCOL.md section 6, byte for byte.
    static let protocolExamples: [(String, String)] = [
        ("doc-ack", "53 54 01 05 15 00 00 00 07 00 00 00 00 00 00 00 02 04 00 00 00 00 00 00 00 00 00 00 00"),
        ("doc-task", """
            53 54 01 03 3e 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 3f 0a 00 00 00
            01 00 00 00 07 00 00 00 00 00 00 00 00 00 00 00 01 00 04 00 62 69 61 73 01 02 00 00 00
            00 00 80 3f 00 00 00 c0
            """),
    ]

    static func frame(_ message: Message) -> [UInt8] { Array(WireCodec.encode(message).readableBytesView) }

    /// Decode seeds: control byte 0 (one read), then frames; a few with chunked reads and the small limit.
    public static func decode() -> [(String, [UInt8])] {
        var seeds = messages().map { ("msg-\($0.0)", [0] + frame($0.1)) }
        for (name, hex) in protocolExamples {
            seeds.append((name, [0] + hex.split(whereSeparator: { $0 == " " || $0 == "\n" }).map { UInt8($0, radix: 16)! }))
        }
        let all = messages().flatMap { frame($0.1) }
        seeds.append(("stream-all-chunked", [0x03, 0, 6, 200] + all))  // reads of 1, 7 and 201 bytes
        seeds.append(("stream-truncated", [0x01, 3] + all.dropLast(5)))
        seeds.append(("small-limit-task", [0x08] + frame(messages()[2].1)))
        // The model options of welcome: an MLP's layers (0x8010) and a custom model's manifest (0x8011).
        seeds.append(("msg-welcome-mlp", [0] + frame(.welcome(Welcome(
            clientID: "hospital-a", sessionID: 3, heartbeatIntervalMillis: 2000, maxFrameBytes: 64 << 20,
            model: WireModelSpec(kind: .mlp, featureCount: 60, outputCount: 10, layers: WireModelLayers(activation: .relu, hidden: [32, 16])))))))
        // Compressed deltas (update option 0x8004) and the welcome asking for them (option 3).
        let spec = ModelSpec(kind: .softmaxRegression, featureCount: 3, outputCount: 4)
        let delta = (0..<spec.parameterCount).map { Float($0 % 5) - 2.2 }
        for (name, encoding) in [("q8", DeltaEncoding.q8), ("top-k", .topK(fraction: 0.25))] {
            seeds.append(("msg-update-\(name)", [0] + frame(.update(Update(
                taskID: 12, baseVersion: 4, sampleCount: 120, trainLoss: 0.7, evalSampleCount: 30, evalLoss: 0.9, evalAccuracy: 0.6, trainMillis: 850,
                delta: [], compressedDelta: CompressedTensors.encode(delta, shapes: spec.tensorShapes, as: encoding))))))
        }
        seeds.append(("msg-task-difference", [0] + frame(.task(TrainingTask(
            taskID: 13, baseVersion: 5, kind: .train,
            hyperparameters: Hyperparameters(learningRate: 0.01, batchSize: 10, epochs: 2, seed: 99, proximalMu: 0), parameters: [],
            referencedParameters: ReferencedParameters.encode(target: delta.map { $0 + 0.5 }, held: delta, heldTaskID: 12,
                                                              shapes: spec.tensorShapes, as: .q8)?.parameters)))))
        seeds.append(("msg-welcome-encoding", [0] + frame(.welcome(Welcome(
            clientID: "hospital-a", sessionID: 3, heartbeatIntervalMillis: 2000, maxFrameBytes: 64 << 20,
            model: WireModelSpec(kind: .softmaxRegression, featureCount: 60, outputCount: 10), updateEncoding: .topK(fraction: 0.01))))))
        seeds.append(("msg-update-failed", [0] + frame(.update(.failed(12, baseVersion: 4, reason: "the trainer exited with status 1")))))
        seeds.append(("msg-welcome-custom", [0] + frame(.welcome(Welcome(
            clientID: "hospital-a", sessionID: 3, heartbeatIntervalMillis: 2000, maxFrameBytes: 64 << 20,
            model: WireModelSpec(kind: .custom, featureCount: 60, outputCount: 10,
                                 manifest: [WireTensorShape(name: "scale", shape: []), WireTensorShape(name: "conv.weight", shape: [4, 3, 3, 2])]))))))
        // A task in three parts (message type 9), and a part on its own.
        let task = frame(messages()[2].1)
        let parts = WireCodec.splitIntoParts([ByteBuffer(bytes: task)], maxPayloadBytes: MessagePart.fieldBytes + 2 + 30)
            .flatMap { Array($0.readableBytesView) }
        seeds.append(("stream-task-in-parts", [0] + parts))
        seeds.append(("msg-part", [0] + frame(.part(MessagePart(messageType: .update, totalLength: 100, offset: 40, bytes: ByteBuffer(bytes: [1, 2, 3, 4]))))))
        return seeds
    }

    /// Coordinator programs (see `CoordinatorTarget`): agents join, answer their tasks with well-shaped
    /// updates until commits and evaluations happen, in every aggregation mode.
    public static func coordinator() -> [(String, [UInt8])] {
        func hello(_ slot: UInt8) -> [UInt8] { [0, slot, 0, 0, 100, 0, 20, 0] }
        func update(_ slot: UInt8, task: UInt8 = 0, deltaByte: UInt8 = 3) -> [UInt8] {
            // flags 0 (an own task, its base version, small values), task index, samples, loss, eval, millis, 15 values
            [1, slot, 0, task, 0, 50, 0, 0, 0, 0x3f, 0, 10, 16, 200, 100, 0, 0, 0] + Array(repeating: deltaByte, count: 15)
        }
        let tick: [UInt8] = [3, 0]
        var seeds: [(String, [UInt8])] = []
        for (index, mode) in AggregationMode.allCases.enumerated() {
            var program: [UInt8] = [UInt8(index)]
            program += hello(0) + hello(1)
            program += update(0) + update(1) + tick
            program += update(0, task: 1) + update(1, task: 1, deltaByte: 0xfd) + tick
            program += update(0, task: 2) + update(1, task: 2)
            program += [4, 0] + [1, 0, 0, 0, 0, 0, 0, 0] + [2, 0, 0, 0, 0, 0, 0, 0] + [0]  // heartbeat
            program += [5, 1]  // goodbye
            seeds.append(("program-\(mode.rawValue)", program))
        }
        // A raw frame (an update for an unknown task) and out-of-place messages.
        var raw: [UInt8] = [0] + hello(2)
        let unknown = frame(messages()[3].1)
        raw += [6, 2, UInt8(unknown.count & 0xff), UInt8(unknown.count >> 8)] + unknown
        raw += hello(3) + [7, 3, 1, 9, 0, 0, 0, 0, 0, 0, 0]
        seeds.append(("raw-frames", raw))
        // The same update in parts (message type 9), one raw frame per part.
        var parts: [UInt8] = [0] + hello(2)
        var stream = WireCodec.splitIntoParts([ByteBuffer(bytes: unknown)], maxPayloadBytes: MessagePart.fieldBytes + 2 + 40)
            .flatMap { Array($0.readableBytesView) }[...]
        while stream.count >= FrameHeader.size {
            let start = stream.startIndex
            let length = FrameHeader.size + Int(stream[start + 4]) + Int(stream[start + 5]) << 8
            parts += [6, 2, UInt8(length & 0xff), UInt8(length >> 8)] + stream.prefix(length)
            stream = stream.dropFirst(length)
        }
        seeds.append(("raw-parts", parts))
        return seeds
    }

    public static func write(to directory: String) throws {
        for (target, seeds) in [("decode", decode()), ("coordinator", coordinator())] {
            let path = directory + "/" + target
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            for (name, bytes) in seeds {
                try Data(bytes).write(to: URL(fileURLWithPath: path + "/seed-" + name))
            }
        }
    }
}
