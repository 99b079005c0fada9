import NIOCore
import StrataCore
import Testing
@testable import StrataWire

/// Compressed deltas (update option 0x8004, welcome option 3; docs/PROTOCOL.md §3): what each encoding keeps,
/// that a frame round-trips, and that every malformed body is a typed error before anything is allocated.
@Suite struct TensorEncodingTests {
    static let spec = ModelSpec(kind: .softmaxRegression, featureCount: 30, outputCount: 10)

    static func values(_ count: Int, seed: UInt64 = 7) -> [Float] {
        var random = SeededGenerator(seed: seed)
        // Skewed like a real delta: mostly small values, a few large ones.
        return (0..<count).map { _ in
            let u = Float(random.nextUniform() - 0.5)
            return u * u * u * (random.nextUniform() < 0.05 ? 40 : 1)
        }
    }

    static func update(_ compressed: CompressedTensors) -> Update {
        Update(taskID: 9, baseVersion: 3, sampleCount: 80, trainLoss: 0.5, evalSampleCount: 20, evalLoss: 0.6, evalAccuracy: 0.7,
               trainMillis: 12, delta: [], compressedDelta: compressed)
    }

    static func decode(_ update: Update) throws -> Update {
        var buffer = WireCodec.encode(.update(update))
        guard case .update(let decoded) = try WireCodec.decodeFrame(from: &buffer, maxPayloadBytes: 1 << 26) else { throw WireError.truncated(field: "not an update") }
        #expect(buffer.readableBytes == 0)
        return decoded
    }

    @Test func q8KeepsEveryValueWithinHalfAStepOfItsBlock() throws {
        let values = Self.values(Self.spec.parameterCount)
        let compressed = try #require(CompressedTensors.encode(values, shapes: Self.spec.tensorShapes, as: .q8))
        let decoded = compressed.decodedValues()
        var offset = 0
        for (_, shape) in Self.spec.tensorShapes {
            let count = shape.reduce(1, *)
            for start in stride(from: offset, to: offset + count, by: Q8BlockEncoding.defaultBlockSize) {
                let block = values[start ..< min(offset + count, start + Q8BlockEncoding.defaultBlockSize)]
                let step = (block.max()! - block.min()!) / 255
                for i in block.indices { #expect(abs(decoded[i] - values[i]) <= step / 2 * 1.001 + 1e-7, "value \(i)") }
            }
            offset += count
        }
        // 1 byte per value plus 8 per block of 256 and 4 per tensor, against 4 per value.
        let float32 = Self.spec.parameterCount * 4
        #expect(compressed.encodedSize < float32 / 3, "\(compressed.encodedSize) of \(float32)")
    }

    @Test func topKKeepsExactlyTheLargestValuesOfEachTensor() throws {
        let values = Self.values(Self.spec.parameterCount)
        let compressed = try #require(CompressedTensors.encode(values, shapes: Self.spec.tensorShapes, as: .topK(fraction: 0.1)))
        let decoded = compressed.decodedValues()
        var offset = 0
        for (_, shape) in Self.spec.tensorShapes {
            let count = shape.reduce(1, *)
            let k = max(1, Int((Double(Float(0.1)) * Double(count)).rounded()))
            let kept = (offset ..< offset + count).filter { decoded[$0] != 0 }
            #expect(kept.count == k)
            for i in kept { #expect(decoded[i] == values[i]) }
            let smallestKept = kept.map { abs(values[$0]) }.min() ?? 0
            let largestDropped = (offset ..< offset + count).filter { decoded[$0] == 0 }.map { abs(values[$0]) }.max() ?? 0
            #expect(smallestKept >= largestDropped)
            offset += count
        }
    }

    @Test func selectionFindsEveryRankLikeASort() {
        var random = SeededGenerator(seed: 3)
        for n in [1, 2, 3, 10, 257] {
            // Many ties: values from a small set.
            let values = (0..<n).map { _ in Float(Int(random.nextUniform() * 5)) }
            let sorted = values.sorted()
            for rank in 0..<n {
                var copy = values
                #expect(TopKEncoding.select(&copy, rank: rank) == sorted[rank], "n \(n) rank \(rank)")
            }
        }
    }

    @Test(arguments: [DeltaEncoding.q8, .topK(fraction: 0.05), .topK(fraction: 1)])
    func anUpdateRoundTripsThroughItsFrame(_ encoding: DeltaEncoding) throws {
        let compressed = try #require(CompressedTensors.encode(Self.values(Self.spec.parameterCount), shapes: Self.spec.tensorShapes, as: encoding))
        let update = Self.update(compressed)
        let decoded = try Self.decode(update)
        #expect(decoded == update)
        #expect(decoded.deltaWireBytes == compressed.encodedSize)
        let values = try ModelTensors.delta(of: decoded, spec: Self.spec)
        #expect(values.count == Self.spec.parameterCount)
    }

    @Test func floatEncodingIsNoCompression() {
        #expect(CompressedTensors.encode([1, 2], shapes: [("bias", [2])], as: .float32) == nil)
    }

    @Test func theWelcomeAsksForAnEncodingThroughOption3() throws {
        for encoding in [DeltaEncoding.q8, .topK(fraction: 0.25)] {
            let welcome = Welcome(clientID: "a", sessionID: 1, heartbeatIntervalMillis: 1000, maxFrameBytes: 1 << 20,
                                  model: WireModelSpec(kind: .softmaxRegression, featureCount: 8, outputCount: 3), updateEncoding: encoding)
            var buffer = WireCodec.encode(.welcome(welcome))
            guard case .welcome(let decoded) = try WireCodec.decodeFrame(from: &buffer, maxPayloadBytes: 1 << 20) else { Issue.record("not a welcome"); return }
            #expect(decoded.updateEncoding == encoding)
        }
    }

    /// A welcome's option 3 with `encoding` and `fraction` spliced in place of a q8 one.
    static func welcomeFrame(encoding: UInt8, fraction: Float) -> ByteBuffer {
        let welcome = Welcome(clientID: "a", sessionID: 1, heartbeatIntervalMillis: 1000, maxFrameBytes: 1 << 20,
                              model: WireModelSpec(kind: .softmaxRegression, featureCount: 8, outputCount: 3), updateEncoding: .q8)
        var bytes = Array(WireCodec.encode(.welcome(welcome)).readableBytesView)
        // The option is last: key 3, length 5, u8 encoding, f32 fraction.
        let at = bytes.count - 5
        #expect(Array(bytes[at - 6 ..< at]) == [0x03, 0x00, 0x05, 0x00, 0x00, 0x00])
        bytes[at] = encoding
        withUnsafeBytes(of: fraction.bitPattern.littleEndian) { for (i, b) in $0.enumerated() { bytes[at + 1 + i] = b } }
        return ByteBuffer(bytes: bytes)
    }

    @Test func anEncodingTheAgentDoesNotKnowMeansFloat32AndABadFractionIsMalformed() throws {
        var unknown = Self.welcomeFrame(encoding: 9, fraction: 0)
        guard case .welcome(let decoded) = try WireCodec.decodeFrame(from: &unknown, maxPayloadBytes: 1 << 20) else { Issue.record("not a welcome"); return }
        #expect(decoded.updateEncoding == nil)
        for fraction: Float in [0, -0.5, 1.5, .nan, .infinity] {
            var bad = Self.welcomeFrame(encoding: TensorEncodingKind.topK.rawValue, fraction: fraction)
            #expect(throws: WireError.self) { try WireCodec.decodeFrame(from: &bad, maxPayloadBytes: 1 << 20) }
        }
        // q8 has no fraction: anything but +0 would re-encode to other bytes (found by fuzzing).
        for fraction: Float in [0.01, -0.0, .nan] {
            var bad = Self.welcomeFrame(encoding: TensorEncodingKind.q8.rawValue, fraction: fraction)
            #expect(throws: WireError.self) { try WireCodec.decodeFrame(from: &bad, maxPayloadBytes: 1 << 20) }
        }
    }

    @Test func parsesTheFlagsSpelling() {
        #expect(DeltaEncoding("float32") == .float32)
        #expect(DeltaEncoding("q8") == .q8)
        #expect(DeltaEncoding("top-k:0.01") == .topK(fraction: 0.01))
        for bad in ["top-k:0", "top-k:2", "top-k:nan", "top-k:", "q4", ""] { #expect(DeltaEncoding(bad) == nil, "\(bad)") }
        #expect(DeltaEncoding(DeltaEncoding.topK(fraction: 0.05).description) == .topK(fraction: 0.05))
    }

    // MARK: Malformed bodies

    /// The frame of an update whose option 0x8004 holds `value` (raw bytes).
    static func frame(option value: [UInt8], tensors: [WireTensor] = []) -> ByteBuffer {
        var payload = ByteBuffer()
        WireCodec.encodeFieldsBeforeTensors(.update(update(CompressedTensors(kind: .q8, tensors: []))), into: &payload)
        payload.writeInteger(UInt16(tensors.count), endianness: .little)
        for tensor in tensors { payload.writeWireTensorHeader(tensor); payload.writeImmutableBuffer(tensor.bytes) }
        payload.writeInteger(UInt16(1), endianness: .little)
        payload.writeInteger(WireOptionKey.updateCompressedDelta, endianness: .little)
        payload.writeInteger(UInt32(value.count), endianness: .little)
        payload.writeBytes(value)
        var frame = ByteBuffer()
        frame.writeInteger(FrameHeader.magic, endianness: .little)
        frame.writeInteger(ProtocolVersion.current)
        frame.writeInteger(MessageType.update.rawValue)
        frame.writeInteger(UInt32(payload.readableBytes), endianness: .little)
        frame.writeImmutableBuffer(payload)
        return frame
    }

    /// An option value: encoding, one tensor "bias" of `shape`, then `body`.
    static func option(encoding: UInt8, shape: [UInt32], body: [UInt8]) -> [UInt8] {
        var b = ByteBuffer()
        b.writeInteger(encoding)
        b.writeInteger(UInt16(1), endianness: .little)
        b.writeWireString("bias")
        b.writeInteger(UInt8(shape.count))
        for d in shape { b.writeInteger(d, endianness: .little) }
        b.writeBytes(body)
        return Array(b.readableBytesView)
    }

    static func le(_ values: UInt32...) -> [UInt8] { values.flatMap { v in withUnsafeBytes(of: v.littleEndian) { Array($0) } } }

    @Test func aWellFormedHandMadeBodyDecodes() throws {
        // top-k of 4 values keeping indices 1 and 3.
        var frame = Self.frame(option: Self.option(encoding: 2, shape: [4], body: Self.le(2, 1, 3, Float(0.5).bitPattern, Float(-2).bitPattern)))
        guard case .update(let update) = try WireCodec.decodeFrame(from: &frame, maxPayloadBytes: 1 << 20) else { Issue.record("not an update"); return }
        #expect(try #require(update.compressedDelta).decodedValues() == [0, 0.5, 0, -2])
        // q8 of 3 values in one block: low −1, step 0.5, codes 0 2 4.
        var q8 = Self.frame(option: Self.option(encoding: 1, shape: [3], body: Self.le(256, Float(-1).bitPattern, Float(0.5).bitPattern) + [0, 2, 4]))
        guard case .update(let u8) = try WireCodec.decodeFrame(from: &q8, maxPayloadBytes: 1 << 20) else { Issue.record("not an update"); return }
        #expect(try #require(u8.compressedDelta).decodedValues() == [-1, 0, 1])
    }

    @Test(arguments: [
        ("unknown encoding", Self.option(encoding: 3, shape: [4], body: Self.le(0))),
        ("top-k k above n", Self.option(encoding: 2, shape: [2], body: Self.le(3, 0, 1, 2, 0, 0, 0))),
        ("top-k index out of range", Self.option(encoding: 2, shape: [4], body: Self.le(1, 4, 0))),
        ("top-k indices repeat", Self.option(encoding: 2, shape: [4], body: Self.le(2, 1, 1, 0, 0))),
        ("top-k indices descend", Self.option(encoding: 2, shape: [4], body: Self.le(2, 3, 1, 0, 0))),
        ("top-k values missing", Self.option(encoding: 2, shape: [4], body: Self.le(2, 1, 3, 0))),
        ("q8 block size 0", Self.option(encoding: 1, shape: [3], body: Self.le(0, 0, 0) + [0, 0, 0])),
        ("q8 block size too large", Self.option(encoding: 1, shape: [3], body: Self.le(65537, 0, 0) + [0, 0, 0])),
        ("q8 codes missing", Self.option(encoding: 1, shape: [3], body: Self.le(256, 0, 0) + [0, 0])),
        ("q8 block header missing", Self.option(encoding: 1, shape: [600], body: Self.le(256, 0, 0, 0, 0) + [UInt8](repeating: 0, count: 600))),
        ("a shape past 2^32 values", Self.option(encoding: 2, shape: [65536, 65536, 2], body: Self.le(0))),
        ("bytes left over", Self.option(encoding: 2, shape: [4], body: Self.le(0, 7))),
    ])
    func aMalformedBodyIsATypedError(_ name: String, _ option: [UInt8]) {
        var frame = Self.frame(option: option)
        #expect(throws: WireError.self, "\(name)") { try WireCodec.decodeFrame(from: &frame, maxPayloadBytes: 1 << 20) }
    }

    @Test func aCompressedDeltaComesWithoutFloatTensors() {
        var frame = Self.frame(option: Self.option(encoding: 2, shape: [4], body: Self.le(0)),
                               tensors: [WireTensor(name: "bias", shape: [1], values: [1])])
        #expect(throws: WireError.self) { try WireCodec.decodeFrame(from: &frame, maxPayloadBytes: 1 << 20) }
    }

    @Test func aHugeClaimedTensorIsRefusedByShapeBeforeAnythingIsDecoded() throws {
        // 2^31 values claimed by a 12-byte top-k body: well formed, but not the model's shape.
        var frame = Self.frame(option: Self.option(encoding: 2, shape: [32768, 65536], body: Self.le(0)))
        guard case .update(let update) = try WireCodec.decodeFrame(from: &frame, maxPayloadBytes: 1 << 20) else { Issue.record("not an update"); return }
        #expect(throws: ModelTensors.ShapeError.self) { try ModelTensors.delta(of: update, spec: Self.spec) }
    }
}
