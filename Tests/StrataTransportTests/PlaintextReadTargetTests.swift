import NIOCore
import NIOEmbedded
import StrataWire
import Testing

@testable import StrataTransport

/// Offers a read target of `length` bytes at its first read, as `MessageDecoder` does for a large frame,
/// and records every buffer it receives.
private final class Lender: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let length: Int
    var taken: Bool?
    var targetAddress: UInt?
    var reads: [ByteBuffer] = []

    init(length: Int) { self.length = length }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let buffer = unwrapInboundIn(data)
        guard taken == nil else { return reads.append(buffer) }
        var target = context.channel.allocator.buffer(capacity: length)
        target.writeImmutableBuffer(buffer)
        targetAddress = Self.address(of: target)
        taken = PlaintextReadTarget.offer(target, length: length, context: context)
        if taken == false { reads.append(buffer) }
    }

    static func address(of buffer: ByteBuffer) -> UInt {
        buffer.withUnsafeReadableBytes { UInt(bitPattern: $0.baseAddress) }
    }
}

@Suite("Plaintext read targets: a large frame decrypted into its own buffer")
struct PlaintextReadTargetTests {
    static func payload(_ count: Int) -> ByteBuffer {
        var payload = ByteBuffer()
        for index in 0..<(count / 4) { payload.writeInteger(UInt32(truncatingIfNeeded: index &* 2_654_435_761)) }
        return payload
    }

    /// The client's ciphertext for `message`, fed to the server in odd-sized pieces with a read() before each.
    static func send(_ message: ByteBuffer, over pair: EmbeddedPair, stopAfter limit: Int = .max) throws {
        try completed(pair.client.writeAndFlush(message))
        var ciphertext = ByteBuffer()
        while var part = try pair.client.readOutbound(as: ByteBuffer.self) { ciphertext.writeBuffer(&part) }
        let sizes = [1_000, 3, 17_000, 70_001, 5, 131_072]
        var index = 0, sent = 0
        while ciphertext.readableBytes > 0, sent < limit {
            let size = min(sizes[index % sizes.count], ciphertext.readableBytes, limit - sent)
            index += 1
            sent += size
            pair.server.read()
            try pair.server.writeInbound(ciphertext.readSlice(length: size)!)
        }
    }

    @Test("the rest of the frame is decrypted into the lent buffer, delivered once whole; what follows comes apart")
    func lentBufferIsFilledInPlace() throws {
        let pki = try PKIFixture.get()
        let pair = try EmbeddedPair(client: pki.agent(), server: pki.coordinator())
        defer { pair.finish() }
        let lender = Lender(length: 700_000)
        try pair.server.pipeline.syncOperations.addHandler(lender)
        try pair.activate()
        try pair.interact()

        let payload = Self.payload(1_000_000)
        try Self.send(payload, over: pair)
        #expect(lender.taken == true)
        #expect(pair.serverHandler.readTargetsTaken == 1 && !pair.serverHandler.holdsReadTarget)
        let first = try #require(lender.reads.first)
        #expect(first.readableBytes == 700_000)
        #expect(Lender.address(of: first) == lender.targetAddress, "delivered in the buffer that was lent, not a copy")
        #expect(first == payload.getSlice(at: 0, length: 700_000)!)
        var rest = ByteBuffer()
        for var part in lender.reads.dropFirst() { rest.writeBuffer(&part) }
        #expect(rest == payload.getSlice(at: 700_000, length: 300_000)!)
    }

    @Test("a connection that ends inside the frame delivers what arrived, so the layer above sees it incomplete")
    func endingConnectionDeliversThePartialFrame() throws {
        let pki = try PKIFixture.get()
        let pair = try EmbeddedPair(client: pki.agent(), server: pki.coordinator())
        defer { pair.finish() }
        let lender = Lender(length: 900_000)
        try pair.server.pipeline.syncOperations.addHandler(lender)
        try pair.activate()
        try pair.interact()

        try Self.send(Self.payload(1_000_000), over: pair, stopAfter: 400_000)
        #expect(lender.taken == true && pair.serverHandler.holdsReadTarget)
        #expect(lender.reads.isEmpty)
        pair.server.pipeline.fireChannelInactive()
        let partial = try #require(lender.reads.first)
        #expect(partial.readableBytes > 300_000 && partial.readableBytes < 400_000)
        #expect(!pair.serverHandler.holdsReadTarget)
    }

    @Test("without a TLS handler below, an offer is not taken and nothing is lost")
    func offerWithoutTakerIsRefused() throws {
        let channel = EmbeddedChannel()
        let lender = Lender(length: 100)
        try channel.pipeline.syncOperations.addHandler(lender)
        try channel.writeInbound(ByteBuffer(string: "start"))
        #expect(lender.taken == false)
        #expect(lender.reads == [ByteBuffer(string: "start")])
        _ = try channel.finish()
    }

    @Test("MessageDecoder over TLS: a 1.2 MB update between two heartbeats decodes exactly, through one read target")
    func decoderOffersLargeFrames() throws {
        let pki = try PKIFixture.get()
        let pair = try EmbeddedPair(client: pki.agent(), server: pki.coordinator())
        defer { pair.finish() }
        try pair.server.pipeline.syncOperations.addHandler(ByteToMessageHandler(MessageDecoder(offerFrameBuffer: PlaintextReadTarget.offer)))
        try pair.activate()
        try pair.interact()

        let delta = WireTensor(name: "weight", shape: [300_000], bytes: Self.payload(1_200_000))
        let messages: [Message] = [
            .heartbeat(Heartbeat(sequence: 1, timestampNanos: 10, isReply: false)),
            .update(Update(taskID: 7, baseVersion: 3, sampleCount: 50, trainLoss: 0.5, evalSampleCount: 0, evalLoss: 0,
                           evalAccuracy: 0, trainMillis: 12, delta: [delta])),
            .heartbeat(Heartbeat(sequence: 2, timestampNanos: 20, isReply: false)),
        ]
        var frames = ByteBuffer()
        for message in messages { WireCodec.encode(message, into: &frames) }
        try Self.send(frames, over: pair)
        var received: [Message] = []
        while let message = try pair.server.readInbound(as: Message.self) { received.append(message) }
        #expect(received == messages)
        #expect(pair.serverHandler.readTargetsTaken == 1)
    }
}
