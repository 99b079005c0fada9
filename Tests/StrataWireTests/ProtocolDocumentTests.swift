import Foundation
import NIOCore
import NIOEmbedded
import Testing
@testable import StrataWire

/// Reads docs/PROTOCOL.md itself and checks every hex example in it against the real codec: each example must
/// decode to the message this file expects, consume its bytes exactly, and be what the encoder writes for that
/// message. So the document and the code cannot drift apart.
///
/// An example is a fenced block right after a line `<!-- example: NAME -->`. On each line of the block the hex
/// bytes come first (two hex digits each, one space apart); everything after the first run of two or more
/// spaces is annotation.
enum ProtocolDocument {
    static let path = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("docs/PROTOCOL.md").path

    struct Example {
        var name: String
        var bytes: [UInt8]
        /// 1-based line of the marker.
        var line: Int
        /// N of a "(N bytes)" in the prose line just before the marker, if there is one.
        var statedSize: Int?
    }

    enum ParseError: Error, CustomStringConvertible {
        case noFence(name: String, line: Int)
        case unterminated(name: String, line: Int)
        case badToken(name: String, line: Int, token: String)
        var description: String {
            switch self {
            case .noFence(let name, let line): "example \(name) (line \(line)): no fenced block after the marker"
            case .unterminated(let name, let line): "example \(name) (line \(line)): the fenced block does not end"
            case .badToken(let name, let line, let token): "example \(name), line \(line): '\(token)' is not a hex byte"
            }
        }
    }

    static func text() throws -> String { try String(contentsOfFile: path, encoding: .utf8) }

    static func examples(in text: String) throws -> [Example] {
        let lines = text.components(separatedBy: "\n")
        var examples: [Example] = []
        var index = 0
        while index < lines.count {
            let trimmed = lines[index].trimmingCharacters(in: .whitespaces)
            guard trimmed.hasPrefix("<!-- example:"), trimmed.hasSuffix("-->") else { index += 1; continue }
            let name = trimmed.dropFirst("<!-- example:".count).dropLast("-->".count).trimmingCharacters(in: .whitespaces)
            let markerLine = index + 1
            var previous = index - 1
            while previous >= 0, lines[previous].trimmingCharacters(in: .whitespaces).isEmpty { previous -= 1 }
            let statedSize = previous >= 0 ? statedByteCount(lines[previous]) : nil
            index += 1
            guard index < lines.count, lines[index].trimmingCharacters(in: .whitespaces).hasPrefix("```") else {
                throw ParseError.noFence(name: name, line: markerLine)
            }
            index += 1
            var bytes: [UInt8] = []
            var closed = false
            while index < lines.count {
                let line = lines[index]
                if line.trimmingCharacters(in: .whitespaces).hasPrefix("```") { closed = true; index += 1; break }
                let content = line.drop(while: { $0 == " " })
                let hexPart = content.range(of: "  ").map { content[..<$0.lowerBound] } ?? content[...]
                for token in hexPart.split(separator: " ") {
                    guard token.count == 2, let byte = UInt8(token, radix: 16) else {
                        throw ParseError.badToken(name: name, line: index + 1, token: String(token))
                    }
                    bytes.append(byte)
                }
                index += 1
            }
            guard closed else { throw ParseError.unterminated(name: name, line: markerLine) }
            examples.append(Example(name: name, bytes: bytes, line: markerLine, statedSize: statedSize))
        }
        return examples
    }

    /// N of the last "(N bytes" or "(N bytes each" in a line of prose.
    static func statedByteCount(_ line: String) -> Int? {
        guard let range = line.range(of: " bytes", options: .backwards) else { return nil }
        let before = line[..<range.lowerBound]
        guard let open = before.lastIndex(of: "(") else { return nil }
        return Int(before[before.index(after: open)...])
    }
}

/// The message each example of docs/PROTOCOL.md must encode, by name.
enum ExpectedExamples {
    static let weight = WireTensor(name: "weight", shape: [2, 2], values: [0.5, -0.5, 0.25, 0])
    static let bias = WireTensor(name: "bias", shape: [2], values: [0, 0.125])

    /// The payload of example task-bias-only, which the part examples carry.
    static let taskBiasOnlyPayload: ByteBuffer = {
        var frame = WireCodec.encode(.task(TrainingTask(
            taskID: 1, baseVersion: 0, kind: .train,
            hyperparameters: Hyperparameters(learningRate: 0.5, batchSize: 10, epochs: 1, seed: 7, proximalMu: 0),
            parameters: [WireTensor(name: "bias", shape: [2], values: [1.0, -2.0])])))
        frame.moveReaderIndex(forwardBy: FrameHeader.size)
        return ByteBuffer(bytes: frame.readableBytesView)   // indices from 0
    }()

    static let all: [String: Message] = [
        "ack-committed": .ack(Ack(taskID: 7, status: .committed, modelVersion: 4)),
        "task-bias-only": .task(TrainingTask(
            taskID: 1, baseVersion: 0, kind: .train,
            hyperparameters: Hyperparameters(learningRate: 0.5, batchSize: 10, epochs: 1, seed: 7, proximalMu: 0),
            parameters: [WireTensor(name: "bias", shape: [2], values: [1.0, -2.0])])),
        "hello": .hello(Hello(agentVersion: "strata-agent/1.0", featureCount: 2, trainSampleCount: 80, evalSampleCount: 20,
                              pendingUpdateCount: 1)),
        "welcome": .welcome(Welcome(clientID: "hospital-a", sessionID: 12, heartbeatIntervalMillis: 2000, maxFrameBytes: 64 * 1024 * 1024,
                                    model: WireModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 2))),
        "welcome-mlp": .welcome(Welcome(clientID: "hospital-a", sessionID: 12, heartbeatIntervalMillis: 2000, maxFrameBytes: 64 * 1024 * 1024,
                                        model: WireModelSpec(kind: .mlp, featureCount: 2, outputCount: 2,
                                                             layers: WireModelLayers(activation: .relu, hidden: [8])))),
        "task-train": .task(TrainingTask(
            taskID: 42, baseVersion: 5, kind: .train,
            hyperparameters: Hyperparameters(learningRate: 0.01, batchSize: 10, epochs: 2, seed: 43, proximalMu: 0),
            parameters: [weight, bias])),
        "task-evaluate": .task(TrainingTask(
            taskID: 57, baseVersion: 6, kind: .evaluate,
            hyperparameters: Hyperparameters(learningRate: 0, batchSize: 0, epochs: 0, seed: 0, proximalMu: 0),
            parameters: [WireTensor(name: "weight", shape: [2, 2], values: [1, -1, 0.5, 0]),
                         WireTensor(name: "bias", shape: [2], values: [0, 0.25])])),
        "update-train": .update(Update(
            taskID: 42, baseVersion: 5, sampleCount: 80, trainLoss: 0.625, evalSampleCount: 20, evalLoss: 0.6875, evalAccuracy: 0.75,
            trainMillis: 37,
            delta: [WireTensor(name: "weight", shape: [2, 2], values: [0.125, -0.125, -0.0625, 0.0625]),
                    WireTensor(name: "bias", shape: [2], values: [0.03125, -0.03125])])),
        "update-evaluate": .update(Update(
            taskID: 57, baseVersion: 6, sampleCount: 0, trainLoss: 0, evalSampleCount: 20, evalLoss: 0.5, evalAccuracy: 0.8,
            trainMillis: 3, delta: [])),
        "update-evaluate-spread": .update(Update(
            taskID: 57, baseVersion: 6, sampleCount: 0, trainLoss: 0, evalSampleCount: 20, evalLoss: 0.5, evalAccuracy: 0.8,
            trainMillis: 3, delta: [], evalLossSquares: 5.95)),
        "update-failed": .update(.failed(58, baseVersion: 6, reason: "trainer exited")),
        "task-difference": .task(TrainingTask(
            taskID: 43, baseVersion: 6, kind: .train,
            hyperparameters: Hyperparameters(learningRate: 0.01, batchSize: 10, epochs: 2, seed: 44, proximalMu: 0),
            parameters: [],
            referencedParameters: ReferencedParameters.encode(target: [0.4921875, -0.4766845703125, 0.2578125, 0, 0, 0.125],
                                                              held: [0.5, -0.5, 0.25, 0, 0, 0.125], heldTaskID: 42,
                                                              shapes: [("weight", [2, 2]), ("bias", [2])], as: .q8)?.parameters)),
        "update-q8": .update(Update(
            taskID: 42, baseVersion: 5, sampleCount: 80, trainLoss: 0.625, evalSampleCount: 20, evalLoss: 0.6875, evalAccuracy: 0.75,
            trainMillis: 37, delta: [],
            compressedDelta: CompressedTensors.encode([-1, 0.9921875, 0, 0.5, -0.25, 1.7421875], shapes: [("weight", [2, 2]), ("bias", [2])], as: .q8))),
        "update-top-k": .update(Update(
            taskID: 42, baseVersion: 5, sampleCount: 80, trainLoss: 0.625, evalSampleCount: 20, evalLoss: 0.6875, evalAccuracy: 0.75,
            trainMillis: 37, delta: [],
            compressedDelta: CompressedTensors.encode([0.125, -0.125, -0.0625, 0.0625, 0.03125, -0.03125], shapes: [("weight", [2, 2]), ("bias", [2])],
                                                      as: .topK(fraction: 0.5)))),
        "welcome-encoding": .welcome(Welcome(clientID: "hospital-a", sessionID: 12, heartbeatIntervalMillis: 2000, maxFrameBytes: 64 * 1024 * 1024,
                                             model: WireModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 2),
                                             updateEncoding: .topK(fraction: 0.25))),
        "part-first": .part(MessagePart(messageType: .task, totalLength: 64, offset: 0, bytes: taskBiasOnlyPayload.getSlice(at: 0, length: 40)!)),
        "part-last": .part(MessagePart(messageType: .task, totalLength: 64, offset: 40, bytes: taskBiasOnlyPayload.getSlice(at: 40, length: 24)!)),
        "ack-received": .ack(Ack(taskID: 42, status: .received, modelVersion: 17)),
        "ack-refused": .ack(Ack(taskID: 44, status: .refused, modelVersion: 17, code: .overShare, reason: "two updates queued")),
        "heartbeat-request": .heartbeat(Heartbeat(sequence: 3, timestampNanos: 1_234_567_890, isReply: false)),
        "heartbeat-reply": .heartbeat(Heartbeat(sequence: 3, timestampNanos: 1_234_567_890, isReply: true)),
        "error": .error(ErrorMessage(code: .heartbeatTimeout, message: "no hello within 10 s")),
        "goodbye-replaced": .goodbye(Goodbye(reason: .replaced, retryAfterMillis: 30000, message: "replaced by a newer session")),
        "goodbye-target": .goodbye(Goodbye(reason: .targetReached, retryAfterMillis: 0, message: "target reached")),
    ]

    static var names: [String] { all.keys.sorted() }

    /// What is wrong with `bytes` as the document's frame for `expected` (empty: nothing).
    static func problems(_ bytes: [UInt8], expected: Message) -> [String] {
        var problems: [String] = []
        var buffer = ByteBuffer(bytes: bytes)
        do {
            if let decoded = try WireCodec.decodeFrame(from: &buffer, maxPayloadBytes: FrameHeader.defaultMaxPayloadBytes) {
                if decoded != expected { problems.append("decodes to \(decoded), expected \(expected)") }
                if buffer.readableBytes != 0 { problems.append("\(buffer.readableBytes) bytes after the frame") }
            } else {
                problems.append("not a complete frame (\(bytes.count) bytes)")
            }
        } catch {
            problems.append("does not decode: \(error)")
        }
        let encoded = Array(WireCodec.encode(expected).readableBytesView)
        if encoded != bytes {
            let at = zip(encoded, bytes).enumerated().first(where: { $0.element.0 != $0.element.1 })?.offset ?? min(encoded.count, bytes.count)
            problems.append("the encoder writes \(encoded.count) bytes, the document has \(bytes.count); first difference at byte \(at)")
        }
        return problems
    }
}

@Suite struct ProtocolDocumentTests {
    let examples: [String: ProtocolDocument.Example]

    init() throws {
        let list = try ProtocolDocument.examples(in: try ProtocolDocument.text())
        var byName: [String: ProtocolDocument.Example] = [:]
        for example in list {
            #expect(byName[example.name] == nil, "example \(example.name) appears twice (line \(example.line))")
            byName[example.name] = example
        }
        examples = byName
    }

    @Test func theDocumentHasExactlyTheExpectedExamples() {
        #expect(Set(examples.keys) == Set(ExpectedExamples.all.keys),
                "in the document only: \(Set(examples.keys).subtracting(ExpectedExamples.all.keys).sorted()); expected but missing: \(Set(ExpectedExamples.all.keys).subtracting(examples.keys).sorted())")
    }

    /// The two part examples put together are the task-bias-only example, byte for byte.
    @Test func thePartExamplesCarryTheTaskExample() throws {
        var assembler = MessageAssembler(maxMessageBytes: 64)
        var delivered: [Message] = []
        for name in ["part-first", "part-last"] {
            var frame = ByteBuffer(bytes: try #require(examples[name]).bytes)
            let part = try #require(try WireCodec.decodeFrame(from: &frame, maxPayloadBytes: 63))
            if let message = try assembler.take(part) { delivered.append(message) }
        }
        #expect(delivered == [ExpectedExamples.all["task-bias-only"]!])
    }

    @Test func everyMessageTypeHasAnExample() {
        let types = Set(examples.keys.compactMap { ExpectedExamples.all[$0]?.type })
        #expect(types == Set(MessageType.allCases), "no example of \(Set(MessageType.allCases).subtracting(types).map(\.rawValue).sorted())")
    }

    @Test(arguments: ExpectedExamples.names)
    func exampleDecodesAndReencodes(name: String) throws {
        let example = try #require(examples[name], "docs/PROTOCOL.md has no <!-- example: \(name) -->")
        let expected = try #require(ExpectedExamples.all[name])
        let problems = ExpectedExamples.problems(example.bytes, expected: expected)
        #expect(problems.isEmpty, "example \(name) (docs/PROTOCOL.md line \(example.line)): \(problems.joined(separator: "; "))")
        if let stated = example.statedSize {
            #expect(stated == example.bytes.count, "example \(name): the prose says \(stated) bytes, the block has \(example.bytes.count)")
        }
    }

    /// The examples, concatenated into one stream, through the channel handler both peers use.
    @Test func examplesDecodeThroughTheChannelDecoder() throws {
        let names = ExpectedExamples.names.filter { examples[$0] != nil }
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(MessageDecoder(messageLimit: MessageSizeLimit(64))))
        var stream = channel.allocator.buffer(capacity: 4096)
        for name in names { stream.writeBytes(examples[name]!.bytes) }
        try channel.writeInbound(stream)
        var decoded: [Message] = []
        while let message = try channel.readInbound(as: Message.self) { decoded.append(message) }
        // The two parts (adjacent in name order) come out as the task they carry.
        let expected = names.filter { $0 != "part-last" }.map { ExpectedExamples.all[$0 == "part-first" ? "task-bias-only" : $0]! }
        #expect(decoded == expected)
        _ = try channel.finish()
    }

    /// The check above is sensitive to every byte: changing any byte of any (correct) example makes it fail.
    @Test func aWrongByteInAnyExampleIsCaught() {
        for (name, expected) in ExpectedExamples.all {
            let correct = Array(WireCodec.encode(expected).readableBytesView)
            #expect(ExpectedExamples.problems(correct, expected: expected).isEmpty)
            for index in correct.indices {
                for flip: UInt8 in [0x01, 0x80] {
                    var bytes = correct
                    bytes[index] ^= flip
                    #expect(!ExpectedExamples.problems(bytes, expected: expected).isEmpty,
                            "example \(name): flipping byte \(index) went unnoticed")
                }
            }
        }
    }

    @Test func theParserRefusesAWrongToken() {
        let text = "<!-- example: x -->\n```\n53 5g 01  magic\n```\n"
        #expect(throws: ProtocolDocument.ParseError.self) { try ProtocolDocument.examples(in: text) }
        let parsed = try? ProtocolDocument.examples(in: "(3 bytes):\n\n<!-- example: y -->\n```\n53 54  magic \"ST\"\n01   version 1 00\n```\n")
        #expect(parsed?.first?.bytes == [0x53, 0x54, 0x01])
        #expect(parsed?.first?.statedSize == 3)
    }
}
