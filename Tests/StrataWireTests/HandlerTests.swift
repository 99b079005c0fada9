import NIOCore
import NIOEmbedded
import Testing
@testable import StrataWire

@Suite struct HandlerTests {
    @Test func decoderHandlerDeliversMessagesAndRejectsOversizedFrames() throws {
        let channel = EmbeddedChannel(handlers: [ByteToMessageHandler(MessageDecoder(maxPayloadBytes: 64)), MessageToByteHandler(MessageEncoder())])
        defer { _ = try? channel.finish() }
        let heartbeat = Message.heartbeat(Heartbeat(sequence: 9, timestampNanos: 1, isReply: false))
        try channel.writeInbound(WireCodec.encode(heartbeat))
        #expect(try channel.readInbound(as: Message.self) == heartbeat)

        try channel.writeOutbound(Message.goodbye(Goodbye(reason: .normal, retryAfterMillis: 0, message: "")))
        let out = try #require(try channel.readOutbound(as: ByteBuffer.self))
        #expect(out.getInteger(at: 3, as: UInt8.self) == MessageType.goodbye.rawValue)

        let big = Message.error(ErrorMessage(code: .internalError, message: String(repeating: "x", count: 200)))
        #expect(throws: WireError.frameTooLarge(length: 206, limit: 64)) { try channel.writeInbound(WireCodec.encode(big)) }
    }

    /// A large frame's buffer is offered below once a sixteenth of it arrived. Taken: the decoder keeps
    /// nothing and decodes the frame when the buffer comes back whole. Not taken: it accumulates as before.
    @Test(arguments: [true, false])
    func largeFramesAreOfferedToTheLayerBelow(take: Bool) throws {
        let values = (0..<200_000).map { Float($0) * 0.25 }
        let update = Message.update(Update(taskID: 1, baseVersion: 0, sampleCount: 5, trainLoss: 0.5, evalSampleCount: 0, evalLoss: 0,
                                           evalAccuracy: 0, trainMillis: 1, delta: [WireTensor(name: "w", shape: [200_000], values: values)]))
        var frame = WireCodec.encode(update)
        let frameBytes = frame.readableBytes
        nonisolated(unsafe) var offers: [(buffer: ByteBuffer, frameBytes: Int)] = []
        let decoder = MessageDecoder(offerFrameBuffer: { buffer, bytes, _ in
            offers.append((buffer, bytes))
            return take
        })
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(decoder))
        defer { _ = try? channel.finish() }
        // Less than a sixteenth: no offer yet.
        try channel.writeInbound(frame.readSlice(length: frameBytes / 32)!)
        #expect(offers.isEmpty)
        try channel.writeInbound(frame.readSlice(length: frameBytes / 8)!)
        let offer = try #require(offers.first)
        #expect(offers.count == 1 && offer.frameBytes == frameBytes)
        #expect(offer.buffer.readableBytes == frameBytes / 32 + frameBytes / 8 && offer.buffer.capacity >= frameBytes)
        if take {
            // The transport fills the lent buffer and delivers it whole.
            var whole = offer.buffer
            whole.writeBuffer(&frame)
            try channel.writeInbound(whole)
        } else {
            // Refused once: the decoder accumulates as before and offers no more on this channel.
            try channel.writeInbound(frame.readSlice(length: frameBytes / 4)!)
            try channel.writeInbound(frame)
        }
        #expect(try channel.readInbound(as: Message.self) == update)
        #expect(offers.count == 1)
    }

    @Test func eofInsideAFrameIsReported() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(MessageDecoder()))
        var frame = WireCodec.encode(.heartbeat(Heartbeat(sequence: 1, timestampNanos: 1, isReply: false)))
        try channel.writeInbound(frame.readSlice(length: 10)!)
        #expect(throws: WireError.incompleteFrameAtEOF(bufferedBytes: 10)) { try channel.finish() }
    }

    @Test func frameEncoderSharesLargeTensorBytesAndProducesTheSameFrame() throws {
        let big = WireTensor(name: "weight", shape: [10, 5000], values: (0..<50_000).map { Float($0) * 0.5 })
        let small = WireTensor(name: "bias", shape: [10], values: (0..<10).map { Float($0) })
        let task = Message.task(TrainingTask(taskID: 7, baseVersion: 3, kind: .train,
            hyperparameters: Hyperparameters(learningRate: 0.1, batchSize: 10, epochs: 1, seed: 9, proximalMu: 0), parameters: [big, small]))
        let update = Message.update(Update(taskID: 7, baseVersion: 3, sampleCount: 5, trainLoss: 0.5, evalSampleCount: 2, evalLoss: 0.25,
                                           evalAccuracy: 0.75, trainMillis: 12, delta: [small, big, small]))
        for message in [task, update] {
            let pieces = WireCodec.encodePieces(message)
            // The large tensor goes out as its own buffer: same storage, no copy.
            let shared = pieces.contains { piece in
                piece.withUnsafeReadableBytes { p in big.bytes.withUnsafeReadableBytes { b in p.baseAddress == b.baseAddress && p.count == b.count } }
            }
            #expect(shared)
            var joined = ByteBuffer()
            for var piece in pieces { joined.writeBuffer(&piece) }
            #expect(joined == WireCodec.encode(message))
            #expect(try WireCodec.decodeFrame(from: &joined, maxPayloadBytes: 1 << 20) == message)

            let channel = EmbeddedChannel(handler: MessageFrameEncoder())
            try channel.writeOutbound(message)
            var out = ByteBuffer()
            var count = 0
            while var piece = try channel.readOutbound(as: ByteBuffer.self) { out.writeBuffer(&piece); count += 1 }
            #expect(count == pieces.count)
            #expect(out == WireCodec.encode(message))
            _ = try channel.finish()
        }
        // Messages without large tensors stay one buffer, identical to `encode`.
        let beat = Message.heartbeat(Heartbeat(sequence: 1, timestampNanos: 2, isReply: true))
        #expect(WireCodec.encodePieces(beat) == [WireCodec.encode(beat)])
        let smallTask = Message.task(TrainingTask(taskID: 1, baseVersion: 0, kind: .evaluate,
            hyperparameters: Hyperparameters(learningRate: 0, batchSize: 0, epochs: 0, seed: 0, proximalMu: 0), parameters: [small]))
        #expect(WireCodec.encodePieces(smallTask) == [WireCodec.encode(smallTask)])
    }
}
