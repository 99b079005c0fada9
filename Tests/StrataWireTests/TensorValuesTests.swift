import NIOCore
import StrataCore
import Testing
@testable import StrataWire

/// The coordinator validates and folds an update's delta from the received frame's tensors in place
/// (`ModelTensors.values`) instead of decoding it into an array (`ModelTensors.decode`): both must agree.
@Suite struct TensorValuesTests {
    static let spec = ModelSpec(kind: .softmaxRegression, featureCount: 1001, outputCount: 3)

    /// An update frame built and decoded as the coordinator receives it: the tensors are slices of the frame.
    static func receivedDelta(_ values: [Float], spec: ModelSpec = spec) throws -> [WireTensor] {
        let update = Update(taskID: 1, baseVersion: 0, sampleCount: 5, trainLoss: 0, evalSampleCount: 0, evalLoss: 0,
                            evalAccuracy: 0, trainMillis: 0, delta: ModelTensors.encode(values, spec: spec))
        var frame = WireCodec.encode(.update(update))
        guard case .update(let decoded)? = try WireCodec.decodeFrame(from: &frame, maxPayloadBytes: 1 << 20) else {
            Issue.record("not an update")
            return []
        }
        return decoded.delta
    }

    static func values(seed: UInt64) -> [Float] {
        var g = SeededGenerator(seed: seed)
        return (0..<spec.parameterCount).map { _ in Float(g.nextNormal()) }
    }

    @Test func frameTensorsReadInPlaceEqualTheDecodedArray() throws {
        let v = Self.values(seed: 1)
        let tensors = try Self.receivedDelta(v)
        let inPlace = try ModelTensors.values(tensors, spec: Self.spec)
        let decoded = try ModelTensors.decode(tensors, spec: Self.spec)
        #expect(inPlace.count == Self.spec.parameterCount)
        #expect(inPlace.floats().map(\.bitPattern) == decoded.map(\.bitPattern))
        #expect(decoded.map(\.bitPattern) == v.map(\.bitPattern))
        // The segments are the frame's own bytes (no copy), at whatever alignment the frame put them.
        var segments = 0
        inPlace.forEachSegment { raw in
            let t = tensors[segments]
            t.bytes.withUnsafeReadableBytes { #expect($0.baseAddress == raw.baseAddress) }
            #expect(raw.count == t.elementCount * 4)
            segments += 1
        }
        #expect(segments == 2)
    }

    @Test func foldAndValidationMatchTheDecodedArray() throws {
        var viaArray = WeightedAccumulator(parameterCount: Self.spec.parameterCount)
        var inPlace = WeightedAccumulator(parameterCount: Self.spec.parameterCount)
        for (k, w) in [Float(3), 0.25, 17].enumerated() {
            let tensors = try Self.receivedDelta(Self.values(seed: 10 + UInt64(k)))
            let decoded = try ModelTensors.decode(tensors, spec: Self.spec)
            let values = try ModelTensors.values(tensors, spec: Self.spec)
            try UpdateValidation.validate(delta: decoded, expectedCount: Self.spec.parameterCount, maxNorm: 1000)
            try UpdateValidation.validate(delta: values, expectedCount: Self.spec.parameterCount, maxNorm: 1000)
            try viaArray.add(decoded, weight: w)
            try inPlace.add(values, weight: w)
        }
        #expect(viaArray.sum.map(\.bitPattern) == inPlace.sum.map(\.bitPattern))
    }

    @Test func nonFiniteInTheBiasGivesItsFlatIndex() throws {
        var v = Self.values(seed: 2)
        let firstBias = Self.spec.featureCount * Self.spec.outputCount
        v[firstBias] = .nan
        let values = try ModelTensors.values(try Self.receivedDelta(v), spec: Self.spec)
        #expect(throws: StrataCoreError.nonFinite(index: firstBias)) {
            try UpdateValidation.validate(delta: values, expectedCount: Self.spec.parameterCount, maxNorm: nil)
        }
    }

    @Test func wrongShapesAreRefusedBeforeAnyValueIsRead() throws {
        let other = ModelSpec(kind: .softmaxRegression, featureCount: 1000, outputCount: 3)
        let tensors = try Self.receivedDelta([Float](repeating: 1, count: other.parameterCount), spec: other)
        #expect(throws: ModelTensors.ShapeError.self) { try ModelTensors.values(tensors, spec: Self.spec) }
        #expect(throws: ModelTensors.ShapeError.tensorCount(expected: 2, actual: 1)) {
            try ModelTensors.values(Array(tensors.prefix(1)), spec: Self.spec)
        }
    }
}
