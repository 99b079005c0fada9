import NIOCore

/// A train task's parameters as a compressed difference from the parameters of an earlier train task of the same
/// session (task option 0x8002): `parameters = reference + D(difference)`, element by element in float32. Both
/// sides compute the sum with `reconstruct`, so the coordinator knows bit for bit the model the agent trains on,
/// and each new difference is taken from that model: what one encoding leaves out is in the next difference, and
/// errors never add up.
public struct ReferencedParameters: Sendable, Hashable {
    /// The train task of this session whose parameters (as the agent reconstructed them) the difference applies to.
    public var referenceTaskID: UInt64
    public var difference: CompressedTensors

    public init(referenceTaskID: UInt64, difference: CompressedTensors) {
        self.referenceTaskID = referenceTaskID
        self.difference = difference
    }

    /// `reference + D(difference)` in float32. `reference` must have the difference's total element count (the
    /// caller checked the difference's shapes against the model).
    public func reconstruct(from reference: [Float]) -> [Float] {
        var values = difference.decodedValues()
        precondition(values.count == reference.count, "a difference of \(values.count) values for \(reference.count) parameters")
        for i in values.indices { values[i] = reference[i] + values[i] }
        return values
    }

    /// What the coordinator sends to move an agent holding `held` (parameters of task `heldTaskID`) to `target`:
    /// the difference compressed as `encoding`, and the parameters the agent will then hold. Nil for float32.
    public static func encode(target: [Float], held: [Float], heldTaskID: UInt64, shapes: [(name: String, shape: [Int])],
                              as encoding: DeltaEncoding) -> (parameters: ReferencedParameters, agentHolds: [Float])? {
        precondition(target.count == held.count)
        var difference = target
        for i in difference.indices { difference[i] -= held[i] }
        guard let compressed = CompressedTensors.encode(difference, shapes: shapes, as: encoding) else { return nil }
        let parameters = ReferencedParameters(referenceTaskID: heldTaskID, difference: compressed)
        return (parameters, parameters.reconstruct(from: held))
    }

    /// Bytes on the wire (the option's value).
    public var encodedSize: Int { 8 + difference.encodedSize }
}

extension ByteBuffer {
    mutating func writeReferencedParameters(_ p: ReferencedParameters) {
        writeInteger(p.referenceTaskID, endianness: .little)
        writeCompressedTensors(p.difference)
    }
}

extension PayloadReader {
    mutating func referencedParameters(_ field: String) throws(WireError) -> ReferencedParameters {
        let reference = try u64(field + ".referenceTaskID")
        return ReferencedParameters(referenceTaskID: reference, difference: try compressedTensors(field + ".difference"))
    }
}
