import NIOCore
import StrataCore

extension WireModelSpec {
    public init(_ spec: ModelSpec) {
        self.init(kind: spec.kind == .softmaxRegression ? .softmaxRegression : .linearRegression,
                  featureCount: UInt32(spec.featureCount), outputCount: UInt32(spec.outputCount))
    }

    public var modelSpec: ModelSpec {
        ModelSpec(kind: kind == .softmaxRegression ? .softmaxRegression : .linearRegression,
                  featureCount: Int(featureCount), outputCount: Int(outputCount))
    }
}

/// Converts between a model's flat parameter vector and its named wire tensors.
public enum ModelTensors {
    /// Splits flat parameters into the spec's tensors (weight, then bias), one buffer for all.
    public static func encode(_ parameters: [Float], spec: ModelSpec) -> [WireTensor] {
        precondition(parameters.count == spec.parameterCount)
        var all = ByteBufferAllocator().buffer(capacity: parameters.count * 4)
        all.writeFloat32LittleEndian(contentsOf: parameters)
        var tensors: [WireTensor] = []
        for (name, shape) in spec.tensorShapes {
            let count = shape.reduce(1, *)
            tensors.append(WireTensor(name: name, shape: shape, bytes: all.readSlice(length: count * 4)!))
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
        let shapes = spec.tensorShapes
        guard tensors.count == shapes.count else { throw .tensorCount(expected: shapes.count, actual: tensors.count) }
        for (index, (tensor, expected)) in zip(tensors, shapes).enumerated() where tensor.name != expected.name || tensor.shape != expected.shape {
            throw .tensor(index: index, name: expected.name, expectedShape: expected.shape, actualName: tensor.name, actualShape: tensor.shape)
        }
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
