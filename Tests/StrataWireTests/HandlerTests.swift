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
        #expect(throws: WireError.frameTooLarge(length: 204, limit: 64)) { try channel.writeInbound(WireCodec.encode(big)) }
    }

    @Test func eofInsideAFrameIsReported() throws {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(MessageDecoder()))
        var frame = WireCodec.encode(.heartbeat(Heartbeat(sequence: 1, timestampNanos: 1, isReply: false)))
        try channel.writeInbound(frame.readSlice(length: 10)!)
        #expect(throws: WireError.incompleteFrameAtEOF(bufferedBytes: 10)) { try channel.finish() }
    }
}
