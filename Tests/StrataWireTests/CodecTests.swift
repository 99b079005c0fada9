import Foundation
import NIOCore
import Testing
@testable import StrataWire

private func sampleMessages() -> [Message] {
    let weight = WireTensor(name: "weight", shape: [3, 2], values: [1, -2, 3.5, .pi, 0, -0.0])
    let bias = WireTensor(name: "bias", shape: [2], values: [0.25, -7])
    return [
        .hello(Hello(agentVersion: "strata-agent/1.0 ✓", featureCount: 60, trainSampleCount: 1234, evalSampleCount: 99, pendingUpdateCount: 2)),
        .welcome(Welcome(clientID: "agent-01", sessionID: 42, heartbeatIntervalMillis: 1000, maxFrameBytes: 1 << 20,
                         model: WireModelSpec(kind: .softmaxRegression, featureCount: 3, outputCount: 2))),
        .task(TrainingTask(taskID: 7, baseVersion: 3, kind: .train,
                           hyperparameters: Hyperparameters(learningRate: 0.01, batchSize: 10, epochs: 20, seed: .max, proximalMu: 0.5),
                           parameters: [weight, bias])),
        .task(TrainingTask(taskID: 8, baseVersion: 4, kind: .evaluate,
                           hyperparameters: Hyperparameters(learningRate: 0, batchSize: 0, epochs: 0, seed: 0, proximalMu: 0),
                           parameters: [])),
        .update(Update(taskID: 7, baseVersion: 3, sampleCount: 500, trainLoss: 0.7, evalSampleCount: 50, evalLoss: 0.8,
                       evalAccuracy: 0.66, trainMillis: 1500, delta: [weight, bias])),
        .ack(Ack(taskID: 7, status: .committed, modelVersion: 4)),
        .ack(Ack(taskID: 9, status: .refused, modelVersion: 4, code: .nonFiniteValue, reason: "delta[0] value 3 is NaN")),
        .heartbeat(Heartbeat(sequence: 5, timestampNanos: 123_456_789, isReply: true)),
        .error(ErrorMessage(code: .notAuthorized, message: "certificate role admin may not open an agent session")),
        .goodbye(Goodbye(reason: .shuttingDown, retryAfterMillis: 5000, message: "drain")),
    ] + sampleMessagesWithOptions()
}

/// Protocol 2's options: every one the codec knows, with values chosen to show a wrong byte.
private func sampleMessagesWithOptions() -> [Message] {
    let column = WireColumnStatistics(count: 40, missing: 2, mean: 1234.5, m2: 9.75e7, min: -3, max: 1e6)
    let preprocessing = WirePreprocessing(features: [WireColumnTransform(center: 1234.5, scale: 1561.25, fill: 1234.5),
                                                     WireColumnTransform(center: 0.001, scale: 1, fill: 0)],
                                          target: .identity, labels: ["approved", "declined", "é"])
    return [
        .hello(Hello(agentVersion: "strata-agent/2.0", featureCount: 2, trainSampleCount: 42, evalSampleCount: 8, pendingUpdateCount: 0,
                     featureNames: ["income", "debt_ratio"], capabilities: .all)),
        .welcome(Welcome(clientID: "agent-02", sessionID: 1, heartbeatIntervalMillis: 500, maxFrameBytes: 1 << 20,
                         model: WireModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 3),
                         featureNames: ["income", "debt_ratio"], preprocessing: preprocessing)),
        .welcome(Welcome(clientID: "agent-03", sessionID: 2, heartbeatIntervalMillis: 500, maxFrameBytes: 1 << 20,
                         model: WireModelSpec(kind: .mlp, featureCount: 2, outputCount: 2,
                                              layers: WireModelLayers(activation: .tanh, hidden: [16, 65_536, 1])))),
        .welcome(Welcome(clientID: "agent-04", sessionID: 3, heartbeatIntervalMillis: 500, maxFrameBytes: 1 << 20,
                         model: WireModelSpec(kind: .custom, featureCount: 8, outputCount: 2,
                                              manifest: [WireTensorShape(name: "scale", shape: []), WireTensorShape(name: "conv.weight", shape: [2, 3, 3, 1]),
                                                         WireTensorShape(name: "é", shape: [0])]))),
        .welcome(Welcome(clientID: "agent-05", sessionID: 4, heartbeatIntervalMillis: 500, maxFrameBytes: 1 << 20,
                         model: WireModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 3), maxMessageBytes: 1 << 30,
                         taskDifferences: false)),
        .welcome(Welcome(clientID: "agent-06", sessionID: 5, heartbeatIntervalMillis: 500, maxFrameBytes: 1 << 20,
                         model: WireModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 3), taskDifferences: true)),
        .task(TrainingTask(taskID: 11, baseVersion: 0, kind: .statistics,
                           hyperparameters: Hyperparameters(learningRate: 0, batchSize: 0, epochs: 0, seed: 0, proximalMu: 0), parameters: [])),
        .task(TrainingTask(taskID: 12, baseVersion: 5, kind: .evaluate,
                           hyperparameters: Hyperparameters(learningRate: 0, batchSize: 0, epochs: 0, seed: 0, proximalMu: 0),
                           parameters: [WireTensor(name: "bias", shape: [3], values: [1, 2, 3])], preprocessing: preprocessing)),
        .update(Update(taskID: 11, baseVersion: 0, sampleCount: 0, trainLoss: 0, evalSampleCount: 0, evalLoss: 0, evalAccuracy: 0,
                       trainMillis: 3, delta: [], statistics: WireDataStatistics(features: [column, column], labels: .text([
                           WireLabelCount(label: "approved", count: 30), WireLabelCount(label: "declined", count: 12)])))),
        .update(Update(taskID: 13, baseVersion: 0, sampleCount: 0, trainLoss: 0, evalSampleCount: 0, evalLoss: 0, evalAccuracy: 0,
                       trainMillis: 3, delta: [], statistics: WireDataStatistics(features: [column], labels: .numeric(column)))),
        .update(Update(taskID: 12, baseVersion: 5, sampleCount: 0, trainLoss: 0, evalSampleCount: 8, evalLoss: 0.4, evalAccuracy: 0.75,
                       trainMillis: 1, delta: [], evaluation: .classification(
                           classes: [WireClassCounts(support: 5, predicted: 4, correct: 4), WireClassCounts(support: 3, predicted: 4, correct: 2)],
                           positiveScores: [0, 1, 2, 0], negativeScores: [3, 1, 1, 0]), evalLossSquares: 2.5)),
        .update(Update(taskID: 14, baseVersion: 5, sampleCount: 0, trainLoss: 0, evalSampleCount: 8, evalLoss: 0.4, evalAccuracy: 0,
                       trainMillis: 1, delta: [], evaluation: .regression(WireRegressionSums(
                           count: 8, sumResidual: -1.5, sumAbsoluteResidual: 6, sumSquaredResidual: 7.25, sumTarget: 80, sumSquaredTarget: 900)))),
    ]
}

/// Welcome option 5 (train tasks may come as differences): one byte, 0 or 1; anything else is refused by name.
@Suite struct TaskDifferencesOptionTests {
    @Test func onlyZeroOrOneIsAFlag() throws {
        var frame = WireCodec.encode(.welcome(Welcome(clientID: "a", sessionID: 1, heartbeatIntervalMillis: 500, maxFrameBytes: 1 << 20,
                                                      model: WireModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 2),
                                                      taskDifferences: false)))
        var bytes = frame.readBytes(length: frame.readableBytes)!
        #expect(bytes.last == 0, "the option is the frame's last byte")
        for (value, expected) in [(UInt8(0), false), (1, true)] {
            bytes[bytes.count - 1] = value
            var buffer = ByteBuffer(bytes: bytes)
            guard case .welcome(let w)? = try WireCodec.decodeFrame(from: &buffer, maxPayloadBytes: 1 << 20) else { Issue.record("no welcome"); return }
            #expect(w.taskDifferences == expected)
        }
        bytes[bytes.count - 1] = 2
        var bad = ByteBuffer(bytes: bytes)
        #expect(throws: WireError.invalidValue(field: "welcome.taskDifferences", reason: "must be 0 or 1, got 2")) {
            _ = try WireCodec.decodeFrame(from: &bad, maxPayloadBytes: 1 << 20)
        }
    }
}

/// An MLP's layers (welcome option 0x8010): required with model kind 3, refused with any other, bounded before
/// anything is allocated.
@Suite struct ModelLayersCodecTests {
    func welcome(kind: WireModelKind, layers: WireModelLayers?) -> ByteBuffer {
        WireCodec.encode(.welcome(Welcome(clientID: "a", sessionID: 1, heartbeatIntervalMillis: 500, maxFrameBytes: 1 << 20,
                                          model: WireModelSpec(kind: kind, featureCount: 2, outputCount: 2, layers: layers))))
    }

    func decode(_ buffer: ByteBuffer) throws(WireError) -> Message? {
        var copy = buffer
        return try WireCodec.decodeFrame(from: &copy, maxPayloadBytes: 1 << 20)
    }

    @Test func layersTravelOnlyWithAnMLP() throws {
        #expect(throws: WireError.invalidValue(field: "welcome.modelLayers", reason: "an mlp model needs its layers (option 0x8010)")) {
            try decode(welcome(kind: .mlp, layers: nil))
        }
        #expect(throws: WireError.invalidValue(field: "welcome.modelLayers", reason: "layers given for a model kind without hidden layers")) {
            try decode(welcome(kind: .softmaxRegression, layers: WireModelLayers(activation: .relu, hidden: [4])))
        }
        let mlp = try decode(welcome(kind: .mlp, layers: WireModelLayers(activation: .relu, hidden: [8, 4])))
        guard case .welcome(let w)? = mlp else { Issue.record("\(String(describing: mlp))"); return }
        #expect(w.model.modelSpec?.summary == "mlp relu 2-8-4-2")
        #expect(w.model.modelSpec?.tensorShapes.map(\.name) == ["layer1.weight", "layer1.bias", "layer2.weight", "layer2.bias", "layer3.weight", "layer3.bias"])
    }

    /// The option's bytes, hand-made: a wrong activation, no layers, 17 layers, a width of 0 or 65537.
    @Test func outOfRangeLayersAreRefusedByName() throws {
        var plain = welcome(kind: .mlp, layers: WireModelLayers(activation: .relu, hidden: [3]))
        let bytes = plain.readBytes(length: plain.readableBytes)!
        // The option value is the frame's last bytes before the end: activation (1), count (2), widths (4 each).
        let valueStart = bytes.count - 7
        func frame(value: [UInt8]) -> ByteBuffer {
            var b = Array(bytes[..<(valueStart - 4)])
            b += withUnsafeBytes(of: UInt32(value.count).littleEndian, Array.init)
            b += value
            let payloadLength = UInt32(b.count - 8)   // 8-byte header: magic, version, type, length
            b.replaceSubrange(4..<8, with: withUnsafeBytes(of: payloadLength.littleEndian, Array.init))
            return ByteBuffer(bytes: b)
        }
        func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }
        #expect(try decode(frame(value: [1, 1, 0] + u32(3))) != nil)   // the untouched value decodes
        #expect(throws: WireError.invalidValue(field: "welcome.modelLayers.activation", reason: "unknown activation 9")) { try decode(frame(value: [9, 1, 0] + u32(3))) }
        #expect(throws: WireError.invalidValue(field: "welcome.modelLayers.count", reason: "0 hidden layers (1 to 16)")) { try decode(frame(value: [1, 0, 0])) }
        #expect(throws: WireError.invalidValue(field: "welcome.modelLayers.count", reason: "17 hidden layers (1 to 16)")) {
            try decode(frame(value: [1, 17, 0] + (0..<17).flatMap { _ in u32(2) }))
        }
        #expect(throws: WireError.invalidValue(field: "welcome.modelLayers.hidden[0]", reason: "width 0 (1 to 65536)")) { try decode(frame(value: [1, 1, 0] + u32(0))) }
        #expect(throws: WireError.invalidValue(field: "welcome.modelLayers.hidden[0]", reason: "width 65537 (1 to 65536)")) { try decode(frame(value: [1, 1, 0] + u32(65_537))) }
    }
}

/// A custom model's manifest (welcome option 0x8011): required with model kind 4, refused with any other, its
/// names and sizes checked before anything is allocated.
@Suite struct ModelManifestCodecTests {
    func decode(kind: WireModelKind, manifest: [WireTensorShape]?) throws(WireError) -> Message? {
        var buffer = WireCodec.encode(.welcome(Welcome(clientID: "a", sessionID: 1, heartbeatIntervalMillis: 500, maxFrameBytes: 1 << 20,
                                                       model: WireModelSpec(kind: kind, featureCount: 2, outputCount: 2, manifest: manifest))))
        return try WireCodec.decodeFrame(from: &buffer, maxPayloadBytes: 1 << 20)
    }

    @Test func aManifestTravelsOnlyWithACustomModelAndIsBounded() throws {
        let field = "welcome.modelManifest"
        #expect(throws: WireError.invalidValue(field: field, reason: "a custom model needs its manifest (option 0x8011)")) { try decode(kind: .custom, manifest: nil) }
        #expect(throws: WireError.invalidValue(field: field, reason: "a manifest given for a built-in model kind")) {
            try decode(kind: .softmaxRegression, manifest: [WireTensorShape(name: "w", shape: [2])])
        }
        #expect(throws: WireError.invalidValue(field: field + ".count", reason: "0 tensors (1 to 1024)")) { try decode(kind: .custom, manifest: []) }
        #expect(throws: WireError.invalidValue(field: field + "[1].name", reason: "tensor name 'w' appears twice")) {
            try decode(kind: .custom, manifest: [WireTensorShape(name: "w", shape: [2]), WireTensorShape(name: "w", shape: [3])])
        }
        #expect(throws: WireError.invalidValue(field: field + "[0].name", reason: "empty tensor name")) { try decode(kind: .custom, manifest: [WireTensorShape(name: "", shape: [1])]) }
        #expect(throws: WireError.invalidValue(field: field + "[0].rank", reason: "rank 9 (at most 8)")) {
            try decode(kind: .custom, manifest: [WireTensorShape(name: "w", shape: Array(repeating: 1, count: 9))])
        }
        // 65536 × 65536 values: more than 2^31 − 1, refused before anything is allocated.
        #expect(throws: WireError.invalidValue(field: field + "[0].shape", reason: "the model would hold more than 2^31 - 1 values")) {
            try decode(kind: .custom, manifest: [WireTensorShape(name: "w", shape: [65_536, 65_536])])
        }
        #expect(throws: WireError.invalidValue(field: field + "[1].shape", reason: "the model would hold more than 2^31 - 1 values")) {
            try decode(kind: .custom, manifest: [WireTensorShape(name: "a", shape: [1 << 30]), WireTensorShape(name: "b", shape: [1 << 30])])
        }
        let ok = try decode(kind: .custom, manifest: [WireTensorShape(name: "a", shape: [2, 2]), WireTensorShape(name: "b", shape: [])])
        guard case .welcome(let w)? = ok else { Issue.record("\(String(describing: ok))"); return }
        #expect(w.model.modelSpec?.tensorShapes.map(\.name) == ["a", "b"] && w.model.modelSpec?.parameterCount == 5)
    }
}

@Suite struct CodecRoundTripTests {
    @Test func everyMessageRoundTrips() throws {
        for message in sampleMessages() {
            var buffer = WireCodec.encode(message)
            let decoded = try WireCodec.decodeFrame(from: &buffer, maxPayloadBytes: 1 << 20)
            #expect(decoded == message)
            #expect(buffer.readableBytes == 0)
        }
    }

    @Test func tensorValuesSurviveBitExactly() throws {
        let values: [Float] = [.nan, .infinity, -.infinity, .leastNonzeroMagnitude, .greatestFiniteMagnitude, -1.5]
        let tensor = WireTensor(name: "t", shape: [6], values: values)
        let floats = tensor.floats()
        #expect(floats.map(\.bitPattern) == values.map(\.bitPattern))
    }

    @Test func framesSplitAtEveryByteDecodeOnlyWhenComplete() throws {
        var stream = ByteBuffer()
        for message in sampleMessages() { WireCodec.encode(message, into: &stream) }
        let bytes = stream.readableBytesView.map { $0 }
        // Feed one byte at a time: nothing decodes early, everything decodes once, in order.
        var buffer = ByteBuffer()
        var decoded: [Message] = []
        for byte in bytes {
            buffer.writeInteger(byte)
            while let message = try WireCodec.decodeFrame(from: &buffer, maxPayloadBytes: 1 << 20) {
                decoded.append(message)
            }
        }
        #expect(decoded == sampleMessages())
    }

    @Test func workedExampleMatchesProtocolDocument() {
        // The hex below is printed in docs/PROTOCOL.md; change both together.
        let ack = WireCodec.encode(.ack(Ack(taskID: 7, status: .committed, modelVersion: 4)))
        #expect(hex(ack) == "53 54 02 05 17 00 00 00 07 00 00 00 00 00 00 00 02 04 00 00 00 00 00 00 00 00 00 00 00 00 00")
        let task = WireCodec.encode(.task(TrainingTask(
            taskID: 1, baseVersion: 0, kind: .train,
            hyperparameters: Hyperparameters(learningRate: 0.5, batchSize: 10, epochs: 1, seed: 7, proximalMu: 0),
            parameters: [WireTensor(name: "bias", shape: [2], values: [1.0, -2.0])])))
        #expect(hex(task) == [
            "53 54 02 03 40 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 01 00 00 00 3f 0a 00 00 00",
            "01 00 00 00 07 00 00 00 00 00 00 00 00 00 00 00 01 00 04 00 62 69 61 73 01 02 00 00 00 00 00 80 3f",
            "00 00 00 c0 00 00",
        ].joined(separator: " "))
    }
}

@Suite struct CodecRejectionTests {
    @Test func oversizedFrameIsRefusedFromItsHeaderAlone() {
        var buffer = ByteBuffer(bytes: [0x53, 0x54, ProtocolVersion.current, MessageType.update.rawValue, 0x00, 0x00, 0x00, 0x10])  // 256 MiB declared
        #expect(throws: WireError.frameTooLarge(length: 0x1000_0000, limit: 1024)) {
            try WireCodec.decodeFrame(from: &buffer, maxPayloadBytes: 1024)
        }
    }

    @Test func unknownVersionIsTyped() {
        var buffer = WireCodec.encode(.heartbeat(Heartbeat(sequence: 1, timestampNanos: 2, isReply: false)))
        buffer.setInteger(UInt8(1), at: 2)  // protocol 1 had no options section
        #expect(throws: WireError.unsupportedVersion(1)) { try WireCodec.decodeFrame(from: &buffer, maxPayloadBytes: 1024) }
    }

    @Test func unknownTypeIsTyped() {
        var buffer = WireCodec.encode(.heartbeat(Heartbeat(sequence: 1, timestampNanos: 2, isReply: false)))
        buffer.setInteger(UInt8(99), at: 3)
        #expect(throws: WireError.unknownMessageType(99)) { try WireCodec.decodeFrame(from: &buffer, maxPayloadBytes: 1024) }
    }

    @Test func badMagicIsDetectedFromTwoBytes() {
        var buffer = ByteBuffer(string: "GE")
        #expect(throws: WireError.badMagic(0x4547)) { try WireCodec.decodeFrame(from: &buffer, maxPayloadBytes: 1024) }
    }

    @Test func truncatedPayloadNamesTheField() {
        // A frame whose declared length cuts the update in the middle of its fields.
        var full = WireCodec.encode(sampleMessages()[4])
        let cut = 20
        full.setInteger(UInt32(cut), at: 4, endianness: .little)
        var buffer = full.getSlice(at: 0, length: FrameHeader.size + cut)!
        #expect(throws: WireError.truncated(field: "update.sampleCount")) { try WireCodec.decodeFrame(from: &buffer, maxPayloadBytes: 1 << 20) }
    }

    @Test func everyTruncationOfEveryMessageIsATypedError() {
        for message in sampleMessages() {
            let frame = WireCodec.encode(message)
            let payloadLength = frame.readableBytes - FrameHeader.size
            for cut in 0..<payloadLength {
                var truncated = frame.getSlice(at: 0, length: FrameHeader.size + cut)!
                truncated.setInteger(UInt32(cut), at: 4, endianness: .little)
                do {
                    let decoded = try WireCodec.decodeFrame(from: &truncated, maxPayloadBytes: 1 << 20)
                    Issue.record("cut \(cut) of \(message.type) decoded as \(String(describing: decoded))")
                } catch {
                    switch error {
                    case .truncated, .invalidValue: break
                    default: Issue.record("cut \(cut) of \(message.type): unexpected \(error)")
                    }
                }
            }
        }
    }

    @Test func trailingBytesAreRefused() {
        var frame = WireCodec.encode(.heartbeat(Heartbeat(sequence: 1, timestampNanos: 2, isReply: false)))
        frame.writeInteger(UInt8(0))
        frame.setInteger(UInt32(20), at: 4, endianness: .little)
        #expect(throws: WireError.trailingBytes(count: 1, messageType: MessageType.heartbeat.rawValue)) {
            try WireCodec.decodeFrame(from: &frame, maxPayloadBytes: 1024)
        }
    }

    @Test func invalidUTF8IsRefused() {
        var frame = WireCodec.encode(.error(ErrorMessage(code: .internalError, message: "ab")))
        frame.setInteger(UInt8(0xFF), at: FrameHeader.size + 4)
        #expect(throws: WireError.invalidValue(field: "error.message", reason: "not valid UTF-8")) {
            try WireCodec.decodeFrame(from: &frame, maxPayloadBytes: 1024)
        }
    }

    @Test func tensorShapeLargerThanPayloadIsTruncationNotAllocation() {
        var frame = WireCodec.encode(.update(Update(taskID: 1, baseVersion: 0, sampleCount: 1, trainLoss: 0, evalSampleCount: 0, evalLoss: 0,
                                                   evalAccuracy: 0, trainMillis: 0, delta: [WireTensor(name: "w", shape: [1], values: [1])])))
        // Patch the tensor's single dimension to 2^32-1 elements: must fail fast, not allocate 16 GiB.
        let dimOffset = FrameHeader.size + 8 * 3 + 4 + 8 + 4 + 4 + 4 + 2 + 2 + 1 + 1
        frame.setInteger(UInt32.max, at: dimOffset, endianness: .little)
        #expect(throws: WireError.truncated(field: "update.delta[0].data")) {
            try WireCodec.decodeFrame(from: &frame, maxPayloadBytes: 1024)
        }
    }

    @Test func randomGarbageNeverCrashes() {
        var rng = SplitMix(seed: 0xC0FFEE)
        var outcomes = (messages: 0, errors: 0, incomplete: 0)
        for round in 0..<20_000 {
            var bytes = (0..<Int(rng.next() % 96)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            if round % 2 == 0, bytes.count >= 8 {  // half the time a plausible header, to reach the payload decoders
                bytes[0] = 0x53; bytes[1] = 0x54; bytes[2] = 1
                bytes[3] = UInt8(1 + rng.next() % 8)
                let length = UInt32(bytes.count - 8)
                withUnsafeBytes(of: length.littleEndian) { for i in 0..<4 { bytes[4 + i] = $0[i] } }
            }
            var buffer = ByteBuffer(bytes: bytes)
            do {
                if try WireCodec.decodeFrame(from: &buffer, maxPayloadBytes: 64) != nil { outcomes.messages += 1 } else { outcomes.incomplete += 1 }
            } catch {
                outcomes.errors += 1
            }
        }
        #expect(outcomes.errors > 1000)
        #expect(outcomes.incomplete > 0)
    }
}

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func hex(_ buffer: ByteBuffer) -> String {
    buffer.readableBytesView.map { String(format: "%02x", $0) }.joined(separator: " ")
}

@Suite struct OptionTests {
    /// A heartbeat (no known options) with `entries` appended as its options section.
    private func heartbeat(options entries: [(UInt16, [UInt8])]) -> ByteBuffer {
        var frame = WireCodec.encode(.heartbeat(Heartbeat(sequence: 1, timestampNanos: 2, isReply: false)))
        frame.moveWriterIndex(to: frame.writerIndex - 2)  // drop the empty section
        frame.writeInteger(UInt16(entries.count), endianness: .little)
        for (key, value) in entries {
            frame.writeInteger(key, endianness: .little)
            frame.writeInteger(UInt32(value.count), endianness: .little)
            frame.writeBytes(value)
        }
        frame.setInteger(UInt32(frame.readableBytes - FrameHeader.size), at: 4, endianness: .little)
        return frame
    }

    @Test func anUnknownOptionIsSkipped() throws {
        var frame = heartbeat(options: [(7, [1, 2, 3]), (0x7fff, [])])
        #expect(try WireCodec.decodeFrame(from: &frame, maxPayloadBytes: 1024) == .heartbeat(Heartbeat(sequence: 1, timestampNanos: 2, isReply: false)))
    }

    @Test func anUnknownCriticalOptionIsRefused() {
        var frame = heartbeat(options: [(7, [1]), (0x8007, [9])])
        #expect(throws: WireError.unsupportedOption(key: 0x8007, field: "heartbeat.options")) {
            try WireCodec.decodeFrame(from: &frame, maxPayloadBytes: 1024)
        }
        #expect(WireError.unsupportedOption(key: 0x8007, field: "x").errorCode == .unsupportedOption)
    }

    @Test func aRepeatedKeyIsRefused() {
        var frame = heartbeat(options: [(7, [1]), (7, [2])])
        #expect(throws: WireError.invalidValue(field: "heartbeat.options[1].key", reason: "option 7 appears twice")) {
            try WireCodec.decodeFrame(from: &frame, maxPayloadBytes: 1024)
        }
    }

    @Test func anOptionLongerThanThePayloadIsTruncation() {
        var frame = heartbeat(options: [(7, [1, 2])])
        frame.setInteger(UInt32(1000), at: frame.writerIndex - 6, endianness: .little)
        #expect(throws: WireError.truncated(field: "heartbeat.options[0].value")) {
            try WireCodec.decodeFrame(from: &frame, maxPayloadBytes: 1024)
        }
    }

    @Test func aLyingCountInsideAnOptionIsRefusedBeforeAllocating() throws {
        // hello option 1 (feature names) claiming 2^32-1 names in 4 bytes.
        var frame = WireCodec.encode(.hello(Hello(agentVersion: "a", featureCount: 1, trainSampleCount: 1, evalSampleCount: 0, pendingUpdateCount: 0,
                                                  featureNames: ["x"])))
        // ... options: count 1, key 1, length 7, then u32 name count: make it huge.
        let countAt = frame.writerIndex - 7
        #expect(frame.getInteger(at: countAt, endianness: .little, as: UInt32.self) == 1)
        frame.setInteger(UInt32.max, at: countAt, endianness: .little)
        #expect(throws: WireError.truncated(field: "hello.featureNames.count")) {
            try WireCodec.decodeFrame(from: &frame, maxPayloadBytes: 1024)
        }
    }

    @Test func bytesLeftInsideAnOptionAreRefused() throws {
        var frame = WireCodec.encode(.hello(Hello(agentVersion: "a", featureCount: 1, trainSampleCount: 1, evalSampleCount: 0, pendingUpdateCount: 0,
                                                  capabilities: .statistics)))
        // capabilities is a u64; declare 9 bytes and add one.
        frame.setInteger(UInt32(9), at: frame.writerIndex - 12, endianness: .little)
        frame.writeInteger(UInt8(0))
        frame.setInteger(UInt32(frame.readableBytes - FrameHeader.size), at: 4, endianness: .little)
        #expect(throws: WireError.invalidValue(field: "hello.capabilities", reason: "1 bytes left over in the option")) {
            try WireCodec.decodeFrame(from: &frame, maxPayloadBytes: 1024)
        }
    }
}
