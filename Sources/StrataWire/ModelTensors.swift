import NIOCore
import StrataCore

extension WireModelSpec {
    public init(_ spec: ModelSpec) {
        switch spec.kind {
        case .softmaxRegression:
            self.init(kind: .softmaxRegression, featureCount: UInt32(spec.featureCount), outputCount: UInt32(spec.outputCount))
        case .linearRegression:
            self.init(kind: .linearRegression, featureCount: UInt32(spec.featureCount), outputCount: UInt32(spec.outputCount))
        case .mlp:
            self.init(kind: .mlp, featureCount: UInt32(spec.featureCount), outputCount: UInt32(spec.outputCount),
                      layers: WireModelLayers(activation: spec.activation == .relu ? .relu : .tanh, hidden: spec.hidden.map { UInt32($0) }))
        case .custom:
            self.init(kind: .custom, featureCount: UInt32(spec.featureCount), outputCount: UInt32(spec.outputCount),
                      manifest: spec.tensors.map { WireTensorShape(name: $0.name, shape: $0.shape.map { UInt32($0) }) })
        }
    }

    /// The model a welcome describes, nil when its values make no model (`ModelSpec.isValid`): a linear
    /// model with several outputs, an MLP without features or with one class.
    public var modelSpec: ModelSpec? {
        guard featureCount <= UInt32(Int32.max), outputCount <= UInt32(Int32.max) else { return nil }
        let hidden = layers?.hidden.map { Int($0) } ?? []
        let modelKind: ModelKind
        switch kind {
        case .softmaxRegression: modelKind = .softmaxRegression
        case .linearRegression: modelKind = .linearRegression
        case .mlp: modelKind = .mlp
        case .custom: modelKind = .custom
        }
        let tensors = manifest?.map { TensorShape(name: $0.name, shape: $0.shape.map { Int($0) }) } ?? []
        guard ModelSpec.isValid(kind: modelKind, featureCount: Int(featureCount), outputCount: Int(outputCount), hidden: hidden, tensors: tensors) else { return nil }
        return ModelSpec(kind: modelKind, featureCount: Int(featureCount), outputCount: Int(outputCount), hidden: hidden,
                         activation: layers?.activation == .tanh ? .tanh : .relu, tensors: tensors)
    }
}

/// Converts between a model's flat parameter vector and its named wire tensors.
public enum ModelTensors {
    /// Splits flat parameters into the spec's tensors (weight, then bias), one buffer for all.
    public static func encode(_ parameters: [Float], spec: ModelSpec) -> [WireTensor] {
        precondition(parameters.count == spec.parameterCount)
        var all = ByteBuffer.exactCapacity(parameters.count * 4)
        all.writeFloat32LittleEndian(contentsOf: parameters)
        var tensors: [WireTensor] = []
        for (name, shape) in spec.tensorShapes {
            let count = shape.reduce(1, *)
            tensors.append(WireTensor(name: name, shape: shape, bytes: all.readView(length: count * 4)!))
        }
        return tensors
    }

    public enum ShapeError: Error, Hashable, Sendable, CustomStringConvertible {
        case tensorCount(expected: Int, actual: Int)
        case tensor(index: Int, name: String, expectedShape: [Int], actualName: String, actualShape: [Int])

        public var description: String {
            switch self {
            case .tensorCount(let expected, let actual):
                return "expected \(expected) tensors, got \(actual)"
            case .tensor(let index, let name, let expected, let actualName, let actual):
                return "tensor \(index) should be '\(name)' with shape \(expected), got '\(actualName)' with shape \(actual)"
            }
        }
    }

    /// Checks names and shapes against the spec (before any value is read).
    public static func validateShapes(_ tensors: [WireTensor], spec: ModelSpec) throws(ShapeError) {
        try validateShapes(tensors.map { ($0.name, $0.shape) }, spec: spec)
    }

    /// Checks names and shapes, in order, against the spec's tensors.
    static func validateShapes(_ given: [(name: String, shape: [Int])], spec: ModelSpec) throws(ShapeError) {
        let shapes = spec.tensorShapes
        guard given.count == shapes.count else { throw .tensorCount(expected: shapes.count, actual: given.count) }
        for (index, (tensor, expected)) in zip(given, shapes).enumerated() where tensor.name != expected.name || tensor.shape != expected.shape {
            throw .tensor(index: index, name: expected.name, expectedShape: expected.shape, actualName: tensor.name, actualShape: tensor.shape)
        }
    }

    /// The flat values of tensors whose shapes were validated, read where they lie (the tensors' buffers,
    /// e.g. slices of a received frame, at any alignment): nothing is copied. Validation and the fold
    /// read them through `Float32Segments`.
    public static func values(_ tensors: [WireTensor], spec: ModelSpec) throws(ShapeError) -> TensorValues {
        try validateShapes(tensors, spec: spec)
        return TensorValues(tensors)
    }

    /// Checks compressed tensors' names and shapes against the spec, before anything is decoded.
    public static func validateShapes(_ compressed: CompressedTensors, spec: ModelSpec) throws(ShapeError) {
        try validateShapes(compressed.tensors.map { ($0.name, $0.shape) }, spec: spec)
    }

    /// An update's delta as flat values, however it travelled: float32 tensors are read in place (in memory, or
    /// in the spool file of an update that came in parts); a compressed delta is decoded (into one dense buffer
    /// per tensor) only after its shapes matched the spec, so a header claiming a huge tensor allocates nothing.
    public static func delta(of update: Update, spec: ModelSpec) throws(ShapeError) -> any Float32Segments {
        if let spooled = update.spooledDelta {
            try validateShapes(spooled.tensors.map { ($0.name, $0.shape) }, spec: spec)
            return spooled
        }
        guard let compressed = update.compressedDelta else { return try values(update.delta, spec: spec) }
        try validateShapes(compressed, spec: spec)
        return TensorValues(compressed.decoded())
    }

    /// Flat parameters from tensors whose shapes were validated.
    public static func decode(_ tensors: [WireTensor], spec: ModelSpec) throws(ShapeError) -> [Float] {
        try validateShapes(tensors, spec: spec)
        // One allocation, one copy per tensor straight from the received bytes.
        let total = tensors.reduce(0) { $0 + $1.elementCount }
        return [Float](unsafeUninitializedCapacity: total) { out, initialized in
            let raw = UnsafeMutableRawBufferPointer(out)
            var offset = 0
            for tensor in tensors {
                tensor.copyValues(into: UnsafeMutableRawBufferPointer(rebasing: raw[offset...]))
                offset += tensor.elementCount * 4
            }
            initialized = total
        }
    }
}

/// Tensors' Float32 little-endian values as one flat vector, one segment per tensor, read in place. Holds
/// the tensors (so their buffers stay alive while it exists); each segment's pointer is valid only inside
/// `forEachSegment`.
public struct TensorValues: Float32Segments {
    public let tensors: [WireTensor]
    public let count: Int

    /// Every tensor's buffer must hold at least its `elementCount · 4` bytes (the decoder guarantees it).
    public init(_ tensors: [WireTensor]) {
        for tensor in tensors {
            precondition(tensor.bytes.readableBytes >= tensor.elementCount * 4,
                         "tensor '\(tensor.name)' holds \(tensor.bytes.readableBytes) bytes for \(tensor.elementCount) values")
        }
        self.tensors = tensors
        count = tensors.reduce(0) { $0 + $1.elementCount }
    }

    public func forEachSegment(_ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        for tensor in tensors {
            let byteCount = tensor.elementCount * 4
            try tensor.bytes.withUnsafeReadableBytes { raw in
                try body(UnsafeRawBufferPointer(rebasing: raw[..<byteCount]))
            }
        }
    }
}
