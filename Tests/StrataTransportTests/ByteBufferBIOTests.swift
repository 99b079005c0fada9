import NIOCore
import NIOEmbedded
import Testing

@testable import StrataTransport

/// The handler's custom BIO over NIO buffers: ciphertext is queued as received and read by OpenSSL
/// straight from those buffers; OpenSSL's output lands in one outbound buffer per flush.
@Suite("ByteBufferBIO under OpenSSLHandler")
struct ByteBufferBIOTests {
    @Test("large records split across many small buffers (record headers cut too) decode exactly")
    func largeRecordsAcrossBuffers() throws {
        let pki = try PKIFixture.get()
        let pair = try EmbeddedPair(client: pki.agent(), server: pki.coordinator())
        defer { pair.finish() }
        try pair.activate()
        try pair.interact()

        var payload = ByteBuffer()
        for index in 0..<(300_000 / 4) { payload.writeInteger(UInt32(truncatingIfNeeded: index &* 2_654_435_761)) }
        try completed(pair.client.writeAndFlush(payload))
        var ciphertext = ByteBuffer()
        while var part = try pair.client.readOutbound(as: ByteBuffer.self) { ciphertext.writeBuffer(&part) }
        #expect(ciphertext.readableBytes > payload.readableBytes)  // several records, each with its overhead
        // Odd sizes, so that buffer boundaries fall inside record headers and bodies alike.
        let sizes = [1, 2, 3, 5, 7, 4096, 16_401, 3, 65_536, 11]
        var index = 0
        while ciphertext.readableBytes > 0 {
            let size = min(sizes[index % sizes.count], ciphertext.readableBytes)
            index += 1
            pair.server.read()
            try pair.server.writeInbound(ciphertext.readSlice(length: size)!)
        }
        let received = try EmbeddedPair.drainInbound(pair.server)
        #expect(received == payload)
        #expect(pair.serverHandler.bufferedCiphertext.inbound == 0 && pair.serverHandler.bufferedCiphertext.outbound == 0)
    }

    @Test("back-pressure: buffers received without read() stay queued, uncopied, until read()")
    func queuedUntilRead() throws {
        let pki = try PKIFixture.get()
        let pair = try EmbeddedPair(client: pki.agent(), server: pki.coordinator())
        defer { pair.finish() }
        pair.autoRead = false
        try pair.activate()
        try pair.interact()

        var total = 0
        for message in ["one", "two", "three"] {
            try completed(pair.client.writeAndFlush(ByteBuffer(string: message)))
            while let record = try pair.client.readOutbound(as: ByteBuffer.self) {
                total += record.readableBytes
                try pair.server.writeInbound(record)
            }
        }
        #expect(try pair.server.readInbound(as: ByteBuffer.self) == nil)
        #expect(pair.serverHandler.bufferedCiphertext.inbound == total)

        pair.server.read()
        #expect(String(buffer: try EmbeddedPair.drainInbound(pair.server)) == "onetwothree")
        #expect(pair.serverHandler.bufferedCiphertext.inbound == 0 && pair.serverHandler.bufferedCiphertext.outbound == 0)
    }

    @Test("one flush of many writes leaves as one ciphertext buffer; nothing is retained afterwards")
    func oneBufferPerFlush() throws {
        let pki = try PKIFixture.get()
        let pair = try EmbeddedPair(client: pki.agent(), server: pki.coordinator())
        defer { pair.finish() }
        try pair.activate()
        try pair.interact()

        let big = ByteBuffer(repeating: 0x5A, count: 200_000)
        var writes: [EventLoopFuture<Void>] = []
        for index in 0..<20 { writes.append(pair.client.write(ByteBuffer(string: "w\(index)"))) }
        writes.append(pair.client.write(big))
        pair.client.flush()
        for write in writes { try completed(write) }
        let first = try #require(try pair.client.readOutbound(as: ByteBuffer.self))
        #expect(try pair.client.readOutbound(as: ByteBuffer.self) == nil)
        #expect(first.readableBytes > 200_000)
        #expect(pair.clientHandler.bufferedCiphertext.inbound == 0 && pair.clientHandler.bufferedCiphertext.outbound == 0)

        pair.server.read()
        try pair.server.writeInbound(first)
        var received = try EmbeddedPair.drainInbound(pair.server)
        let prefix = (0..<20).map { "w\($0)" }.joined()
        #expect(received.readString(length: prefix.utf8.count) == prefix)
        #expect(received == big)
    }

    @Test("output back-pressure: flushed plaintext is encrypted one batch at a time while the channel is not writable")
    func encryptsAsTheChannelDrains() throws {
        let pki = try PKIFixture.get()
        let pair = try EmbeddedPair(client: pki.agent(), server: pki.coordinator())
        defer { pair.finish() }
        try pair.activate()
        try pair.interact()

        var payload = ByteBuffer()
        for index in 0..<(1_000_000 / 4) { payload.writeInteger(UInt32(truncatingIfNeeded: index &* 40_503)) }
        pair.client.isWritable = false
        let small = pair.client.write(ByteBuffer(string: "before"))
        let big = pair.client.write(payload)
        pair.client.flush()
        // Not writable: nothing is encrypted, nothing completes.
        #expect(try pair.client.readOutbound(as: ByteBuffer.self) == nil)
        #expect(throws: (any Error).self) { try completed(small) }

        pair.client.isWritable = true
        pair.client.pipeline.fireChannelWritabilityChanged()
        var ciphertext: [ByteBuffer] = []
        while let part = try pair.client.readOutbound(as: ByteBuffer.self) { ciphertext.append(part) }
        // One buffer per batch: 1 MB in batches of 256 KiB.
        #expect(ciphertext.count == (payload.readableBytes + 6 + OpenSSLHandler.batchSize - 1) / OpenSSLHandler.batchSize)
        #expect(ciphertext.allSatisfy { $0.readableBytes <= OpenSSLHandler.batchSize + 1024 })
        try completed(small)
        try completed(big)

        for part in ciphertext {
            pair.server.read()
            try pair.server.writeInbound(part)
        }
        var received = try EmbeddedPair.drainInbound(pair.server)
        #expect(received.readString(length: 6) == "before")
        #expect(received == payload)
    }
}
