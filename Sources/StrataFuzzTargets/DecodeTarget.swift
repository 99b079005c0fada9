import NIOCore
import NIOEmbedded
import StrataWire

/// The frame decoder as a peer reaches it: bytes off the socket, in chunks of any size, into
/// `MessageDecoder` inside a real NIO pipeline; and every message type's payload parser on its own.
///
/// Input: a control byte (bits 0-2: how many chunk sizes follow, 0 = the stream arrives in one read;
/// bit 3: a 64-byte payload limit instead of the default, to reach `frame-too-large`), the chunk sizes
/// (one byte each, size = byte + 1, cycled), then the stream. A seed is `00` followed by encoded frames.
///
/// Invariants:
/// - nothing traps, and every failure is a `WireError`;
/// - the messages and the error do not depend on how the stream was split (the split decode through
///   the pipeline equals a one-piece decode with `WireCodec.decodeFrame`), and a stream that ends inside
///   a frame ends in `incompleteFrameAtEOF` with exactly the bytes of that frame;
/// - every decoded message encodes back to the bytes it was decoded from, minus the options a receiver
///   skips (unknown, non-critical) — the encoding is canonical, a fixed point of decode∘encode — through
///   `encode` and through the shared-buffer `encodePieces` alike, NaN payloads included;
/// - the tensors of a decoded message hold all their values (what `TensorValues` and the fold rely on).
public enum DecodeTarget {
    public static func run(_ data: [UInt8]) throws(FuzzFailure) {
        var input = FuzzInput(data)
        let control = input.u8()
        let chunkSizes = (0..<Int(control & 0x07)).map { _ in Int(input.u8()) + 1 }
        let limit = control & 0x08 != 0 ? 64 : FrameHeader.defaultMaxPayloadBytes
        let stream = input.rest()

        let reference = decodeInOnePiece(stream, limit: limit)
        let split = try decodeThroughPipeline(stream, chunkSizes: chunkSizes, limit: limit)

        try check(split.messages.count == reference.frames.count,
                  "split decode gave \(split.messages.count) messages, one-piece decode \(reference.frames.count)")
        for (message, frame) in zip(split.messages, reference.frames) {
            try checkRoundTrip(message, frame: frame)
        }
        let expectedError: WireError? = reference.error
            ?? (reference.leftover > 0 ? .incompleteFrameAtEOF(bufferedBytes: reference.leftover) : nil)
        try check(split.error == expectedError,
                  "split decode ended with \(split.error.map { "\($0)" } ?? "no error"), expected \(expectedError.map { "\($0)" } ?? "no error")")

        // Every payload parser on the bytes after a frame header's worth (a seed's own payload among them).
        let payload = Array(stream.dropFirst(FrameHeader.size))
        for type in MessageType.allCases {
            var buffer = ByteBuffer(bytes: payload)
            let message: Message
            do {
                message = try WireCodec.decodePayload(type: type, from: &buffer)
            } catch {
                continue  // a typed WireError: the signature says so, and that is the contract
            }
            try check(message.type == type, "decodePayload(\(type)) returned a \(message.type)")
            try checkRoundTrip(message, frame: header(type: type, length: payload.count) + payload)
        }
    }

    /// Messages in parts are accepted up to this size, by both decodes.
    static let messageLimit = 4_096

    /// The frames one by one, and messages in parts put together as `MessageDecoder` does (a first part over
    /// the limit refused from its header); each message with the single frame it equals.
    static func decodeInOnePiece(_ stream: [UInt8], limit: Int) -> (frames: [[UInt8]], error: WireError?, leftover: Int) {
        var buffer = ByteBuffer(bytes: stream)
        var frames: [[UInt8]] = []
        var assembler = MessageAssembler(maxMessageBytes: messageLimit)
        var carried: [UInt8] = []
        while true {
            let start = buffer.readerIndex
            let message: Message
            do {
                if !assembler.isAssembling, try WireCodec.checkedHeader(buffer, maxPayloadBytes: limit) != nil,
                   let total = MessageAssembler.announcedFirstPart(buffer), total > UInt64(messageLimit) {
                    throw WireError.messageTooLarge(length: total, limit: messageLimit)
                }
                guard let decoded = try WireCodec.decodeFrame(from: &buffer, maxPayloadBytes: limit) else { break }
                if case .part(let part) = decoded { carried += Array(part.bytes.readableBytesView) }
                guard let whole = try assembler.take(decoded) else { continue }
                message = whole
            } catch let error as WireError {
                return (frames, error, buffer.readableBytes)
            } catch {
                preconditionFailure("decodeFrame and take throw WireError only")
            }
            if carried.isEmpty {
                frames.append(Array(stream[start..<buffer.readerIndex]))
            } else {
                frames.append(header(type: message.type, length: carried.count) + carried)
                carried = []
            }
        }
        return (frames, nil, buffer.readableBytes)
    }

    static func decodeThroughPipeline(_ stream: [UInt8], chunkSizes: [Int], limit: Int) throws(FuzzFailure) -> (messages: [Message], error: WireError?) {
        let channel = EmbeddedChannel(handler: ByteToMessageHandler(MessageDecoder(maxPayloadBytes: limit, messageLimit: MessageSizeLimit(messageLimit))))
        var messages: [Message] = []
        var failure: (any Error)?
        var offset = 0
        var chunk = 0
        do {
            while offset < stream.count {
                let size = chunkSizes.isEmpty ? stream.count : chunkSizes[chunk % chunkSizes.count]
                let end = min(stream.count, offset + size)
                chunk += 1
                try channel.writeInbound(channel.allocator.buffer(bytes: stream[offset..<end]))
                offset = end
                while let message = try channel.readInbound(as: Message.self) { messages.append(message) }
            }
        } catch {
            failure = error
        }
        // Frames decoded in the same read as a failure reached the pipeline before it.
        while let message = try? channel.readInbound(as: Message.self) { messages.append(message) }
        // End of stream: the decoder's `decodeLast` reports a frame cut short. After an error the
        // handler is in its error state and the session would already be closing.
        do {
            _ = try channel.finish(acceptAlreadyClosed: true)
        } catch {
            if failure == nil { failure = error }
        }
        guard let failure else { return (messages, nil) }
        guard let wire = failure as? WireError else {
            throw FuzzFailure("the pipeline failed with \(type(of: failure)) \(failure), not a WireError")
        }
        return (messages, wire)
    }

    /// `message` encodes canonically: to `frame` itself unless the frame carried options the decoder skipped
    /// (or listed them out of order), and in any case to bytes that decode and re-encode to themselves, in
    /// one buffer and in pieces alike.
    static func checkRoundTrip(_ message: Message, frame: [UInt8]) throws(FuzzFailure) {
        let encoded = Array(WireCodec.encode(message).readableBytesView)
        if encoded != frame {
            try check(encoded.count < frame.count, "\(message.type) re-encodes to \(encoded.count) bytes, more than the \(frame.count) decoded")
            var again = ByteBuffer(bytes: encoded)
            let redecoded: Message?
            do { redecoded = try WireCodec.decodeFrame(from: &again, maxPayloadBytes: Int(UInt32.max)) } catch {
                throw FuzzFailure("\(message.type) re-encoding does not decode: \(error)")
            }
            let reencoded = redecoded.map { Array(WireCodec.encode($0).readableBytesView) }
            try check(reencoded == encoded, "\(message.type) re-encoding is not a fixed point")
        }
        // A tiny sharing threshold sends every tensor down the zero-copy path.
        let pieces = WireCodec.encodePieces(message, sharedTensorBytes: 4).flatMap { Array($0.readableBytesView) }
        try check(pieces == encoded, "\(message.type) encodePieces differs from encode")
        let tensors: [WireTensor]
        switch message {
        case .task(let task): tensors = task.parameters
        case .update(let update): tensors = update.delta
        default: tensors = []
        }
        for tensor in tensors {
            try check(tensor.bytes.readableBytes == tensor.elementCount * 4,
                      "tensor '\(tensor.name)' \(tensor.shape) holds \(tensor.bytes.readableBytes) bytes")
        }
        let values = TensorValues(tensors)
        var seen = 0
        values.forEachSegment { seen += $0.count / 4 }
        try check(seen == values.count, "tensor segments hold \(seen) values, expected \(values.count)")
        // A compressed delta decodes without trapping: to exactly its element count, when that is small enough
        // to allocate here (the coordinator decodes only after the model's shapes matched).
        var compressedTensors: CompressedTensors?
        if case .update(let update) = message { compressedTensors = update.compressedDelta }
        if case .task(let task) = message { compressedTensors = task.referencedParameters?.difference }
        if let compressed = compressedTensors {
            let total = compressed.tensors.reduce(0) { $0 + $1.elementCount }
            if total <= 1 << 20 {
                try check(compressed.decodedValues().count == total, "a compressed delta decodes to another count than its shapes'")
                try check(compressed.decoded().map(\.elementCount) == compressed.tensors.map(\.elementCount), "decoded tensors change shape")
            }
        }
    }

    static func header(type: MessageType, length: Int) -> [UInt8] {
        var buffer = ByteBuffer()
        buffer.writeInteger(FrameHeader.magic, endianness: .little)
        buffer.writeInteger(ProtocolVersion.current)
        buffer.writeInteger(type.rawValue)
        buffer.writeInteger(UInt32(length), endianness: .little)
        return Array(buffer.readableBytesView)
    }
}
