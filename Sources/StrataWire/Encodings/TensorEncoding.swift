import NIOCore

/// The compressed encodings of this protocol revision, numbered as on the wire (update option 0x8004,
/// welcome option 3). Float32 in the fixed `tensors` field is always accepted and has no number here.
public enum TensorEncodingKind: UInt8, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    /// Blocks of values, each as a float32 low end and step plus one byte per value (`Q8BlockEncoding`).
    case q8 = 1
    /// The largest-magnitude values of each tensor with their flat indices; the rest are zero (`TopKEncoding`).
    case topK = 2

    public var description: String { self == .q8 ? "q8" : "top-k" }
}

/// How deltas travel, as a coordinator asks for it (`--update-encoding`, welcome option 3).
public enum DeltaEncoding: Sendable, Hashable, CustomStringConvertible {
    /// Plain float32 values in the update's `tensors` field.
    case float32
    /// 8-bit codes in blocks of `Q8BlockEncoding.defaultBlockSize` values.
    case q8
    /// The `fraction` (0 < fraction ≤ 1) largest-magnitude values of each tensor.
    case topK(fraction: Float)

    public var kind: TensorEncodingKind? {
        switch self {
        case .float32: nil
        case .q8: .q8
        case .topK: .topK
        }
    }

    /// `float32`, `q8` or `top-k:FRACTION` (e.g. `top-k:0.01`).
    public init?(_ text: String) {
        switch text {
        case "float32": self = .float32
        case "q8": self = .q8
        default:
            guard text.hasPrefix("top-k:"), let fraction = Float(text.dropFirst("top-k:".count)), DeltaEncoding.isValidFraction(fraction) else { return nil }
            self = .topK(fraction: fraction)
        }
    }

    public var description: String {
        switch self {
        case .float32: "float32"
        case .q8: "q8"
        case .topK(let fraction): "top-k:\(fraction)"
        }
    }

    static func isValidFraction(_ fraction: Float) -> Bool { fraction.isFinite && fraction > 0 && fraction <= 1 }

    /// The type that writes and reads bodies of this encoding.
    var codec: (any TensorEncoding)? {
        switch self {
        case .float32: nil
        case .q8: Q8BlockEncoding(blockSize: Q8BlockEncoding.defaultBlockSize)
        case .topK(let fraction): TopKEncoding(fraction: fraction)
        }
    }

    static func codec(for kind: TensorEncodingKind) -> any TensorEncoding.Type {
        switch kind {
        case .q8: Q8BlockEncoding.self
        case .topK: TopKEncoding.self
        }
    }
}

/// One compressed encoding of tensor values: one type per encoding, each in its own file. Reading is split
/// in two so that nothing is allocated for a tensor before its shape was checked against the model:
/// `readBody` checks a body's structure against the element count its header claims and returns its bytes;
/// `decode` turns a checked body into values and cannot fail.
protocol TensorEncoding: Sendable {
    static var kind: TensorEncodingKind { get }
    /// Appends the body that stands for `values`.
    func encode(_ values: UnsafeBufferPointer<Float>, into buffer: inout ByteBuffer)
    /// Reads one body for `count` values off `reader`, checking everything but the values themselves (a NaN
    /// is the fold's business, as in float32): its length, its parameters, its indices.
    static func readBody(count: Int, from reader: inout PayloadReader, field: String) throws(WireError) -> ByteBuffer
    /// Writes the `out.count` values a body returned by `readBody` for that count stands for.
    static func decode(_ body: ByteBuffer, into out: UnsafeMutableBufferPointer<Float>)
}

/// One tensor as it travels compressed: its header as in `tensors`, and its encoding's body.
public struct CompressedTensor: Sendable, Hashable {
    public var name: String
    public var shape: [Int]
    public var body: ByteBuffer
    public var elementCount: Int { shape.reduce(1, *) }
}

/// An update's delta in a compressed encoding (update option 0x8004).
public struct CompressedTensors: Sendable, Hashable {
    public var kind: TensorEncodingKind
    public var tensors: [CompressedTensor]

    public init(kind: TensorEncodingKind, tensors: [CompressedTensor]) {
        self.kind = kind
        self.tensors = tensors
    }

    /// Compresses flat `values` laid out as `shapes` (one tensor each, in order). Nil for `.float32`.
    public static func encode(_ values: [Float], shapes: [(name: String, shape: [Int])], as encoding: DeltaEncoding) -> CompressedTensors? {
        guard let kind = encoding.kind, let codec = encoding.codec else { return nil }
        precondition(shapes.reduce(0) { $0 + $1.shape.reduce(1, *) } == values.count, "shapes do not cover \(values.count) values")
        var tensors: [CompressedTensor] = []
        var offset = 0
        values.withUnsafeBufferPointer { all in
            for (name, shape) in shapes {
                let count = shape.reduce(1, *)
                var body = ByteBufferAllocator().buffer(capacity: count + 64)
                codec.encode(UnsafeBufferPointer(rebasing: all[offset ..< offset + count]), into: &body)
                tensors.append(CompressedTensor(name: name, shape: shape, body: body))
                offset += count
            }
        }
        return CompressedTensors(kind: kind, tensors: tensors)
    }

    /// The values every tensor stands for, one after the other (allocates the dense size: check the shapes first).
    public func decodedValues() -> [Float] {
        let codec = DeltaEncoding.codec(for: kind)
        let total = tensors.reduce(0) { $0 + $1.elementCount }
        return [Float](unsafeUninitializedCapacity: total) { out, initialized in
            var offset = 0
            for tensor in tensors {
                let count = tensor.elementCount
                codec.decode(tensor.body, into: UnsafeMutableBufferPointer(rebasing: out[offset ..< offset + count]))
                offset += count
            }
            initialized = total
        }
    }

    /// The tensors as float32 wire tensors (allocates the dense size: check the shapes first).
    public func decoded() -> [WireTensor] {
        let codec = DeltaEncoding.codec(for: kind)
        return tensors.map { tensor in
            let count = tensor.elementCount
            let values = [Float](unsafeUninitializedCapacity: count) { out, initialized in
                codec.decode(tensor.body, into: out)
                initialized = count
            }
            return WireTensor(name: tensor.name, shape: tensor.shape, values: values)
        }
    }

    /// Bytes on the wire (the option's value).
    public var encodedSize: Int { 3 + tensors.reduce(0) { $0 + 2 + $1.name.utf8.count + 1 + 4 * $1.shape.count + $1.body.readableBytes } }
}

extension ByteBuffer {
    mutating func writeCompressedTensors(_ compressed: CompressedTensors) {
        precondition(compressed.tensors.count <= WireLimits.maxTensorsPerMessage)
        writeInteger(compressed.kind.rawValue)
        writeInteger(UInt16(compressed.tensors.count), endianness: .little)
        for tensor in compressed.tensors {
            precondition(tensor.shape.count <= WireLimits.maxTensorRank)
            writeWireString(tensor.name)
            writeInteger(UInt8(tensor.shape.count))
            for dim in tensor.shape { writeInteger(UInt32(dim), endianness: .little) }
            writeImmutableBuffer(tensor.body)
        }
    }
}

extension PayloadReader {
    /// Welcome option 3: `u8 encoding`, `f32 fraction` (top-k's; exactly 0 for q8). An encoding this build does not
    /// know reads as nil: the agent then sends float32.
    mutating func updateEncoding(_ field: String) throws(WireError) -> DeltaEncoding? {
        let byte = try u8(field + ".encoding")
        let fraction = try f32(field + ".fraction")
        switch TensorEncodingKind(rawValue: byte) {
        case .q8:
            // One spelling per value: a receiver that re-encodes what it read writes the same bytes.
            guard fraction.bitPattern == 0 else { throw .invalidValue(field: field + ".fraction", reason: "q8 takes no fraction (0), not \(fraction)") }
            return .q8
        case .topK:
            guard DeltaEncoding.isValidFraction(fraction) else {
                throw .invalidValue(field: field + ".fraction", reason: "\(fraction) is not in (0, 1]")
            }
            return .topK(fraction: fraction)
        case nil: return nil
        }
    }

    mutating func compressedTensors(_ field: String) throws(WireError) -> CompressedTensors {
        let byte = try u8(field + ".encoding")
        guard let kind = TensorEncodingKind(rawValue: byte) else {
            throw .invalidValue(field: field + ".encoding", reason: "unknown tensor encoding \(byte)")
        }
        let codec = DeltaEncoding.codec(for: kind)
        let count = try tensorCount(field)
        var tensors: [CompressedTensor] = []
        tensors.reserveCapacity(count)
        for index in 0..<count {
            let prefix = "\(field)[\(index)]"
            // A sparse body can be short for many values; the dense size is bounded by the model's shapes, checked
            // before anything is decoded. Here it only has to be a count a u32 index reaches.
            let (name, shape, elements) = try tensorHeader(prefix, maxElements: Int(UInt32.max),
                                                           overLimit: .invalidValue(field: prefix + ".shape", reason: "more than 2^32 − 1 values"))
            let body = try codec.readBody(count: elements, from: &self, field: prefix)
            tensors.append(CompressedTensor(name: name, shape: shape, body: body))
        }
        return CompressedTensors(kind: kind, tensors: tensors)
    }
}
