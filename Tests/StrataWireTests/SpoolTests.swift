import Foundation
import NIOCore
import NIOEmbedded
import StrataCore
import Testing
@testable import StrataWire

/// Updates in parts kept on disk while they arrive (`UpdateSpool`): the same message as in memory, values read
/// back in chunks, the same refusals, nothing left behind.
@Suite struct SpoolTests {
    /// A fresh directory, removed by `body`'s end.
    static func withDirectory<T>(_ body: (String) throws -> T) throws -> T {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("strata-spool-test-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try body(path)
    }

    static func assemble(_ message: Message, limit: Int, spool: UpdateSpool?, check: (() throws -> Void)? = nil) throws -> Message? {
        let parts = try MessagePartsTests.decodeAll(MessagePartsTests.frames(MessagePartsTests.parts(of: message, limit: limit)))
        var assembler = MessageAssembler(maxMessageBytes: 1 << 26, spool: spool)
        var delivered: Message?
        for part in parts {
            delivered = try assembler.take(part)
            try check?()
        }
        return delivered
    }

    /// An update with options beside its tensors.
    static func update(_ floats: Int) -> Update {
        guard case .update(var update) = MessagePartsTests.update(floats) else { preconditionFailure() }
        update.evalLossSquares = 2.5
        update.evaluation = .classification(classes: [WireClassCounts(support: 5, predicted: 4, correct: 4), WireClassCounts(support: 3, predicted: 4, correct: 2)],
                                            positiveScores: [0, 1, 2, 0], negativeScores: [3, 1, 1, 0])
        return update
    }

    @Test func aSpooledUpdateIsTheSameUpdateWithItsValuesOnDisk() throws {
        let original = Self.update(40_000)
        try Self.withDirectory { directory in
            let delivered = try Self.assemble(.update(original), limit: 8_192, spool: UpdateSpool(directory: directory)) {
                // Unlinked as soon as it is made: nothing to clean up, even after a crash.
                let left = try FileManager.default.contentsOfDirectory(atPath: directory)
                #expect(left.isEmpty, "\(left)")
            }
            guard case .update(let spooled)? = delivered else { Issue.record("no update delivered"); return }
            let spooledDelta = try #require(spooled.spooledDelta)
            #expect(spooled.delta.isEmpty)
            #expect(spooledDelta.tensors.map(\.name) == original.delta.map(\.name))
            #expect(spooledDelta.tensors.map(\.shape) == original.delta.map(\.shape))
            #expect(spooledDelta.floats() == TensorValues(original.delta).floats())
            #expect(spooled.deltaWireBytes == original.deltaWireBytes)
            var fieldsOnly = spooled
            fieldsOnly.spooledDelta = nil
            fieldsOnly.delta = original.delta
            #expect(fieldsOnly == original, "every field and option as sent")
            // Read back as the coordinator reads it: validated against the model's tensors, then folded.
            let spec = ModelSpec(kind: .custom, featureCount: 1, outputCount: 1, tensors: [TensorShape(name: "w", shape: [20_000, 2]), TensorShape(name: "b", shape: [3])])
            let values = try ModelTensors.delta(of: spooled, spec: spec)
            #expect(values.count == 40_003)
            let wrong = ModelSpec(kind: .custom, featureCount: 1, outputCount: 1, tensors: [TensorShape(name: "w", shape: [40_000]), TensorShape(name: "b", shape: [3])])
            #expect(throws: ModelTensors.ShapeError.self) { try ModelTensors.delta(of: spooled, spec: wrong) }
        }
    }

    /// A tensor larger than a chunk is read in several segments, each within its tensor, in flat order.
    @Test func valuesAreReadInChunks() throws {
        let count = SpooledTensors.chunkBytes / 4 * 2 + 5
        let values = (0..<count).map { Float($0 % 997) }
        let update = Update(taskID: 1, baseVersion: 0, sampleCount: 1, trainLoss: 0, evalSampleCount: 0, evalLoss: 0, evalAccuracy: 0, trainMillis: 0,
                            delta: [WireTensor(name: "w", shape: [count], values: values), WireTensor(name: "b", shape: [2], values: [7, 8])])
        try Self.withDirectory { directory in
            guard case .update(let spooled)? = try Self.assemble(.update(update), limit: 8 << 20, spool: UpdateSpool(directory: directory)),
                  let delta = spooled.spooledDelta else { Issue.record("no spooled update"); return }
            var sizes: [Int] = []
            delta.forEachSegment { sizes.append($0.count) }
            #expect(sizes == [SpooledTensors.chunkBytes, SpooledTensors.chunkBytes, 20, 8])
            #expect(delta.floats() == values + [7, 8])
        }
    }

    /// Decoded from the file, a payload gets exactly the refusal (or the message) it gets in memory: every
    /// truncation, and bytes changed at random across the fields, tensor headers and options.
    @Test func theSpoolRefusesWhatMemoryRefuses() throws {
        var payload = WireCodec.encode(.update(Self.update(64)))
        payload.moveReaderIndex(forwardBy: FrameHeader.size)
        let bytes = Array(payload.readableBytesView)
        var cases: [[UInt8]] = (0..<bytes.count).map { Array(bytes[..<$0]) }
        var generator = SeededGenerator(seed: 11)
        for _ in 0..<400 {
            var mutated = bytes
            for _ in 0..<Int.random(in: 1...3, using: &generator) {
                // Mostly outside the values, where a change alters the structure.
                let index = Bool.random(using: &generator) ? Int.random(in: 0..<60, using: &generator) : Int.random(in: 0..<bytes.count, using: &generator)
                mutated[index] = UInt8.random(in: 0...255, using: &generator)
            }
            cases.append(mutated)
        }
        cases.append(bytes + [0])
        try Self.withDirectory { directory in
            let spool = UpdateSpool(directory: directory)
            var agreedOnErrors = 0
            for payloadBytes in cases {
                var inMemory = ByteBuffer(bytes: payloadBytes)
                let memory = Result { try WireCodec.decodePayload(type: .update, from: &inMemory) }
                let file = try spool.create()
                try file.write(ByteBuffer(bytes: payloadBytes), at: 0)
                let spooled = Result { try WireCodec.decodeSpooledUpdate(file, length: payloadBytes.count) }
                switch (memory, spooled) {
                case (.failure(let a), .failure(let b)):
                    #expect(a as? WireError == b as? WireError, "payload of \(payloadBytes.count) bytes")
                    agreedOnErrors += 1
                case (.success(.update(let a)), .success(.update(var b))):
                    let values = b.spooledDelta?.floats() ?? []
                    #expect(values.map(\.bitPattern) == TensorValues(a.delta).floats().map(\.bitPattern))
                    b.spooledDelta = nil
                    b.delta = a.delta
                    #expect(a == b)
                default:
                    Issue.record("memory: \(memory), spool: \(spooled)")
                }
            }
            #expect(agreedOnErrors > 100, "the cases exercise the refusals")
        }
    }

    @Test func aSpoolThatCannotBeWrittenIsNotThePeersFault() throws {
        let missing = UpdateSpool(directory: "/nonexistent-\(UUID().uuidString)")
        #expect(throws: SpoolError.self) { _ = try Self.assemble(.update(Self.update(4_000)), limit: 4_096, spool: missing) }
        // Other messages in parts (tasks, at an agent) never touch a spool.
        let task = Message.task(TrainingTask(taskID: 1, baseVersion: 0, kind: .train,
                                             hyperparameters: Hyperparameters(learningRate: 0.1, batchSize: 1, epochs: 1, seed: 1, proximalMu: 0),
                                             parameters: [WireTensor(name: "w", shape: [4_000], values: [Float](repeating: 1, count: 4_000))]))
        #expect(try Self.assemble(task, limit: 4_096, spool: missing) == task)
    }

    /// Through the decoder handler: the coordinator's pipeline delivers the spooled update.
    @Test func theDecoderSpoolsWhenGivenASpool() throws {
        let message = Message.update(Self.update(200_000))
        let frames = MessagePartsTests.frames(MessagePartsTests.parts(of: message, limit: 300_000))
        try Self.withDirectory { directory in
            let channel = EmbeddedChannel(handler: ByteToMessageHandler(MessageDecoder(
                maxPayloadBytes: 300_000, messageLimit: MessageSizeLimit(1 << 22), spool: UpdateSpool(directory: directory))))
            defer { _ = try? channel.finish(acceptAlreadyClosed: true) }
            for frame in frames { try channel.writeInbound(frame) }
            guard case .update(let update)? = try channel.readInbound(as: Message.self) else { Issue.record("no update"); return }
            #expect(update.spooledDelta?.count == 200_003)
        }
    }
}
