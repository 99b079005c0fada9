import NIOConcurrencyHelpers
import NIOCore
import NIOEmbedded
import Testing
@testable import StrataWire

/// Tasks and updates larger than a frame travel as part frames (§2 "Messages in parts").
@Suite struct MessagePartsTests {
    static func update(_ floats: Int, taskID: UInt64 = 7) -> Message {
        let values = (0..<floats).map { Float($0 % 1000) * 0.001 - 0.5 }
        return .update(Update(taskID: taskID, baseVersion: 3, sampleCount: 40, trainLoss: 0.25, evalSampleCount: 0, evalLoss: 0, evalAccuracy: 0,
                              trainMillis: 9, delta: [WireTensor(name: "w", shape: [floats / 2, 2], values: Array(values[..<(floats / 2 * 2)])),
                                                      WireTensor(name: "b", shape: [3], values: [1, 2, 3])]))
    }

    /// The part frames of `message` for a peer whose frames hold at most `limit` payload bytes.
    static func parts(of message: Message, limit: Int) -> [ByteBuffer] {
        WireCodec.splitIntoParts(WireCodec.encodePieces(message, sharedTensorBytes: 64), maxPayloadBytes: limit)
    }

    /// Joins buffers into whole frames (a part frame may be several buffers: header, slices, options).
    static func frames(_ pieces: [ByteBuffer]) -> [ByteBuffer] {
        var all = ByteBuffer()
        for var piece in pieces { all.writeBuffer(&piece) }
        var frames: [ByteBuffer] = []
        while all.readableBytes > 0 {
            let length = Int(all.getInteger(at: all.readerIndex + 4, endianness: .little, as: UInt32.self)!)
            frames.append(all.readSlice(length: FrameHeader.size + length)!)
        }
        return frames
    }

    static func decodeAll(_ frames: [ByteBuffer]) throws -> [Message] {
        try frames.map { frame in
            var frame = frame
            return try #require(try WireCodec.decodeFrame(from: &frame, maxPayloadBytes: .max))
        }
    }

    @Test func aMessageLargerThanAFrameIsSplitAndPutBackTogether() throws {
        let message = Self.update(10_000)
        let whole = WireCodec.encode(message)
        let frames = Self.frames(Self.parts(of: message, limit: 4_096))
        #expect(frames.count == (whole.readableBytes - 8 + 4_096 - 24) / (4_096 - 23))
        var assembler = MessageAssembler(maxMessageBytes: 1 << 20)
        var delivered: [Message] = []
        for (index, part) in try Self.decodeAll(frames).enumerated() {
            guard case .part(let p) = part else { Issue.record("frame \(index) is \(part.type), not a part"); return }
            #expect(p.messageType == .update && p.totalLength == UInt64(whole.readableBytes - 8))
            #expect(FrameHeader.size + MessagePart.fieldBytes + p.bytes.readableBytes + 2 <= 4_096 + 8)
            if let done = try assembler.take(part) { delivered.append(done) }
            #expect(assembler.isAssembling == (index < frames.count - 1))
        }
        #expect(delivered == [message])
        // Small messages, and messages that are neither tasks nor updates, stay one frame.
        #expect(Self.frames(Self.parts(of: Self.update(100), limit: 4_096)).count == 1)
        let error = Message.error(ErrorMessage(code: .internalError, message: String(repeating: "x", count: 5_000)))
        #expect(Self.frames(WireCodec.splitIntoParts(WireCodec.encodePieces(error), maxPayloadBytes: 4_096)).count == 1)
    }

    @Test func partsEncodeAndDecodeLikeAnyMessage() throws {
        let part = Message.part(MessagePart(messageType: .task, totalLength: 10, offset: 4, bytes: ByteBuffer(bytes: [1, 2, 3])))
        var frame = WireCodec.encode(part)
        #expect(frame.readableBytes == 8 + 21 + 3 + 2)
        #expect(try WireCodec.decodeFrame(from: &frame, maxPayloadBytes: 100) == part)
    }

    /// Each malformed part is refused by the codec with the field it breaks, before any message is built.
    @Test(arguments: [
        (MessageType.hello, UInt64(10), UInt64(0), 3, "part.messageType"),
        (.part, 10, 0, 3, "part.messageType"),
        (.update, 10, 0, 0, "part.length"),
        (.update, 10, 8, 3, "part.offset"),
        (.update, 10, 10, 1, "part.offset"),
        (.update, 0, 0, 1, "part.offset"),
        (.update, UInt64.max, UInt64.max - 1, 3, "part.offset"),   // offset + length past 2^64: the message once trapped
    ])
    func malformedPartsAreRefusedByTheCodec(type: MessageType, total: UInt64, offset: UInt64, count: Int, field: String) throws {
        var payload = ByteBuffer()
        payload.writeInteger(type.rawValue)
        payload.writeInteger(total, endianness: .little)
        payload.writeInteger(offset, endianness: .little)
        payload.writeInteger(UInt32(count), endianness: .little)
        payload.writeBytes([UInt8](repeating: 0, count: count))
        payload.writeInteger(UInt16(0), endianness: .little)
        #expect { _ = try WireCodec.decodePayload(type: .part, from: &payload) } throws: { error in
            guard case WireError.invalidValue(let named, _) = error else { return false }
            return named == field
        }
    }

    /// The assembler's rules: first at 0, within the limit, in order, same message, nothing between parts.
    @Test func theAssemblerRefusesPartsOutOfOrderOrTooLargeOrInterrupted() throws {
        let message = Self.update(3_000)
        let parts = try Self.decodeAll(Self.frames(Self.parts(of: message, limit: 1_024)))
        #expect(parts.count >= 4)
        let total = WireCodec.encode(message).readableBytes - 8

        var refusing = MessageAssembler(maxMessageBytes: 0)
        #expect(throws: WireError.messageTooLarge(length: UInt64(total), limit: 0)) { _ = try refusing.take(parts[0]) }
        var small = MessageAssembler(maxMessageBytes: total - 1)
        #expect(throws: WireError.messageTooLarge(length: UInt64(total), limit: total - 1)) { _ = try small.take(parts[0]) }

        func refused(_ sequence: [Message], field: String) -> Bool {
            var assembler = MessageAssembler(maxMessageBytes: total)
            do {
                for message in sequence { _ = try assembler.take(message) }
                return false
            } catch WireError.invalidValue(let named, _) {
                return named == field
            } catch {
                return false
            }
        }
        #expect(refused([parts[1]], field: "part.offset"), "not starting at 0")
        #expect(refused([parts[0], parts[2]], field: "part.offset"), "a part skipped")
        #expect(refused([parts[0], parts[0]], field: "part.offset"), "a part repeated")
        let heartbeat = Message.heartbeat(Heartbeat(sequence: 1, timestampNanos: 1, isReply: false))
        #expect(refused([parts[0], heartbeat], field: "part"), "another message between parts")
        guard case .part(var other) = parts[1] else { Issue.record("not a part"); return }
        other.messageType = .task
        #expect(refused([parts[0], .part(other)], field: "part"), "a part of another message")
        other.messageType = .update
        other.totalLength += 1
        #expect(refused([parts[0], .part(other)], field: "part"), "another total")

        // Outside a message in parts, every other message passes through untouched.
        var idle = MessageAssembler(maxMessageBytes: 0)
        #expect(try idle.take(heartbeat) == heartbeat)
    }

    /// Through the channel handlers: the encoder splits for the peer's frame limit, the decoder reserves the
    /// whole message from the budget at its first part, holds it until the last, and delivers one message.
    @Test func handlersSplitReserveAndDeliver() throws {
        let message = Self.update(200_000)   // ~800 kB
        let sender = EmbeddedChannel(handler: MessageFrameEncoder(peerFrameLimit: MessageSizeLimit(300_000)))
        defer { _ = try? sender.finish() }
        try sender.writeOutbound(message)
        var wire: [ByteBuffer] = []
        while let piece = try sender.readOutbound(as: ByteBuffer.self) { wire.append(piece) }
        let frames = Self.frames(wire)
        #expect(frames.count == 3)

        let total = WireCodec.encode(message).readableBytes - 8
        let budget = FrameBudget(capacity: 4 << 20)
        let gate = FrameBudgetGate(budget: budget)
        let receiver = EmbeddedChannel()
        defer { _ = try? receiver.finish(acceptAlreadyClosed: true) }
        try receiver.pipeline.syncOperations.addHandler(gate)
        let progress = NIOLockedValueBox(0)
        try receiver.pipeline.syncOperations.addHandler(ByteToMessageHandler(MessageDecoder(
            maxPayloadBytes: 300_000, budget: gate, messageLimit: MessageSizeLimit(total), onPart: { progress.withLockedValue { $0 += 1 } })))
        for (index, frame) in frames.enumerated() {
            try receiver.writeInbound(frame)
            if index < frames.count - 1 {
                #expect(try receiver.readInbound(as: Message.self) == nil)
                #expect(budget.snapshot.reserved == total + 8 + 300_000, "the whole message is reserved from its first part")
            }
        }
        #expect(try receiver.readInbound(as: Message.self) == message)
        #expect(budget.snapshot.reserved == 0, "released with the last part")
        #expect(progress.withLockedValue { $0 } == frames.count - 1, "every part before the last counts as progress for the idle timeouts")

        // A receiver that accepts no messages in parts refuses the first part from its header, before the rest.
        let closed = EmbeddedChannel(handler: ByteToMessageHandler(MessageDecoder(maxPayloadBytes: 300_000)))
        #expect(throws: WireError.messageTooLarge(length: UInt64(total), limit: 0)) {
            try closed.writeInbound(frames[0].getSlice(at: frames[0].readerIndex, length: 64)!)
        }
        _ = try? closed.finish(acceptAlreadyClosed: true)
    }

    /// A connection's first message is a hello: a part there is refused before anything is reserved.
    @Test func aFirstMessageInPartsIsRefused() throws {
        let frames = Self.frames(Self.parts(of: Self.update(200_000), limit: 300_000))
        let budget = FrameBudget(capacity: 4 << 20)
        let gate = FrameBudgetGate(budget: budget)
        let channel = EmbeddedChannel()
        try channel.pipeline.syncOperations.addHandler(gate)
        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(MessageDecoder(
            maxPayloadBytes: 300_000, budget: gate, maxFirstPayloadBytes: 65_000, messageLimit: MessageSizeLimit(1 << 22))))
        #expect(throws: WireError.self) { try channel.writeInbound(frames[0].getSlice(at: frames[0].readerIndex, length: 64)!) }
        #expect(budget.snapshot.reserved == 0)
        _ = try? channel.finish(acceptAlreadyClosed: true)
    }
}

extension MessagePartsTests {
    /// Large buffers get the capacity asked for, not the next power of two (a 400 MB model would take 512 MiB).
    @Test func largeBuffersAreAllocatedExactly() {
        let size = 3 << 20 + 5
        var buffer = ByteBuffer.exactCapacity(size)
        #expect(buffer.capacity == size && buffer.readableBytes == 0)
        buffer.writeRepeatingByte(7, count: size)
        #expect(buffer.capacity == size && buffer.readableBytes == size)
        buffer.writeInteger(UInt8(1))   // grows as any buffer would
        #expect(buffer.readableBytes == size + 1)
        #expect(ByteBuffer.exactCapacity(100).capacity >= 100)
        let tensor = WireTensor(name: "w", shape: [(1 << 19) + 3], values: [Float](repeating: 1, count: (1 << 19) + 3))
        #expect(tensor.bytes.capacity == 4 * ((1 << 19) + 3))
    }
}

extension MessagePartsTests {
    /// NIO copies a slice that starts 16 MiB or more into its storage; a large message is split, and a tensor read,
    /// without copying a byte of it: every part and tensor shares the message's storage.
    @Test func partsAndTensorsShareTheMessagesStorage() throws {
        let floats = 6 << 20   // 24 MiB of values: parts start beyond 16 MiB
        let message = Message.update(Update(taskID: 1, baseVersion: 0, sampleCount: 1, trainLoss: 0, evalSampleCount: 0, evalLoss: 0, evalAccuracy: 0,
                                            trainMillis: 1, delta: [WireTensor(name: "w", shape: [floats], values: [Float](repeating: 0.5, count: floats)),
                                                                    WireTensor(name: "b", shape: [2], values: [1, 2])]))
        let pieces = WireCodec.encodePieces(message)
        let tensorBytes = try #require(pieces.first { $0.readableBytes == floats * 4 })
        func base(_ buffer: ByteBuffer) -> UInt { buffer.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) } }
        let start = base(tensorBytes)
        let parts = WireCodec.splitIntoParts(pieces, maxPayloadBytes: 8 << 20)
        let views = parts.filter { $0.readableBytes > 1 << 20 }
        #expect(views.count == 3)
        for view in views {
            let offset = base(view) &- start
            #expect(offset < UInt(floats * 4), "a part's bytes were copied (at \(base(view)), the tensor's at \(start))")
        }
        // Reading a frame whose second tensor starts beyond 16 MiB shares the frame's storage too.
        var frame = WireCodec.encode(message)
        let frameStart = base(frame)
        guard case .update(let decoded)? = try WireCodec.decodeFrame(from: &frame, maxPayloadBytes: .max) else { Issue.record("not an update"); return }
        #expect(base(decoded.delta[1].bytes) &- frameStart < UInt(floats * 4 + 100))
        #expect(decoded.delta[1].floats() == [1, 2])
    }
}
