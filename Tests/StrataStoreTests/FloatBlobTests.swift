import Foundation
import Testing
@testable import StrataStore

@Suite struct FloatBlobTests {
    @Test func blobsAreLittleEndianBinary32AndRoundTripBitForBit() throws {
        let values: [Float] = [1, -2.5, 0, -0.0, .infinity, .leastNonzeroMagnitude, .greatestFiniteMagnitude, Float(bitPattern: 0x7FC0_1234)]
        let blob = FloatBlob.encode(values)
        var expected = [UInt8]()
        for v in values { withUnsafeBytes(of: v.bitPattern.littleEndian) { expected.append(contentsOf: $0) } }
        #expect([UInt8](blob) == expected)
        let decoded = try #require(FloatBlob.decode(blob))
        #expect(decoded.map(\.bitPattern) == values.map(\.bitPattern))
        #expect(FloatBlob.decode(Data())! == [])
        #expect(FloatBlob.decode(blob.prefix(7)) == nil)
        // A blob that is a slice (non-zero start index) decodes the same.
        #expect(FloatBlob.decode(Data(blob.dropFirst(4)))!.map(\.bitPattern) == values.dropFirst().map(\.bitPattern))
        #expect(FloatBlob.decode(blob.dropFirst(4))!.map(\.bitPattern) == values.dropFirst().map(\.bitPattern))
    }
}
