import Foundation

/// Writes NumPy's `.npy` arrays and `.npz` archives (an uncompressed ZIP of `.npy` members), the formats
/// `numpy.load` reads without pickling. Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
public enum NumPyArchive {
    public struct Array: Sendable, Hashable {
        public var name: String
        public var shape: [Int]
        /// float32, little-endian, C order.
        public var values: [Float]
        public init(name: String, shape: [Int], values: [Float]) {
            precondition(shape.reduce(1, *) == values.count, "shape \(shape) does not hold \(values.count) values")
            self.name = name
            self.shape = shape
            self.values = values
        }
    }

    /// One `.npy` file (format version 1.0): magic, header length, a Python-literal header padded so the data
    /// starts at a multiple of 64 bytes, then the raw little-endian float32 values.
    public static func npy(_ array: Array) -> Data {
        let shape = array.shape.count == 1 ? "(\(array.shape[0]),)" : "(" + array.shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': \(shape), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var data = Data([0x93] + Swift.Array("NUMPY".utf8) + [1, 0])
        let length = UInt16(header.utf8.count)
        data.append(contentsOf: [UInt8(length & 0xff), UInt8(length >> 8)])
        data.append(contentsOf: header.utf8)
        for value in array.values {
            let bits = value.bitPattern.littleEndian
            withUnsafeBytes(of: bits) { data.append(contentsOf: $0) }
        }
        return data
    }

    /// An `.npz` archive with one `NAME.npy` member per array (stored, not deflated; CRC-32 checked by readers).
    public static func npz(_ arrays: [Array]) -> Data {
        var archive = Data()
        var central = Data()
        for array in arrays {
            let name = Swift.Array((array.name + ".npy").utf8)
            let payload = npy(array)
            let crc = crc32(payload)
            let offset = UInt32(archive.count)
            // Local file header.
            archive.append(le32(0x04034b50))
            archive.append(le16(20)); archive.append(le16(0)); archive.append(le16(0))   // version needed, flags, stored
            archive.append(le16(0)); archive.append(le16(0x21))                         // time 00:00, date 1980-01-01
            archive.append(le32(crc)); archive.append(le32(UInt32(payload.count))); archive.append(le32(UInt32(payload.count)))
            archive.append(le16(UInt16(name.count))); archive.append(le16(0))
            archive.append(contentsOf: name)
            archive.append(payload)
            // Its central directory entry.
            central.append(le32(0x02014b50))
            central.append(le16(20)); central.append(le16(20)); central.append(le16(0)); central.append(le16(0))
            central.append(le16(0)); central.append(le16(0x21))
            central.append(le32(crc)); central.append(le32(UInt32(payload.count))); central.append(le32(UInt32(payload.count)))
            central.append(le16(UInt16(name.count))); central.append(le16(0)); central.append(le16(0))
            central.append(le16(0)); central.append(le16(0)); central.append(le32(0))
            central.append(le32(offset))
            central.append(contentsOf: name)
        }
        let centralOffset = UInt32(archive.count)
        archive.append(central)
        archive.append(le32(0x06054b50))
        archive.append(le16(0)); archive.append(le16(0))
        archive.append(le16(UInt16(arrays.count))); archive.append(le16(UInt16(arrays.count)))
        archive.append(le32(UInt32(central.count))); archive.append(le32(centralOffset))
        archive.append(le16(0))
        return archive
    }

    /// CRC-32 (IEEE 802.3, reflected, as ZIP uses it).
    public static func crc32(_ data: Data) -> UInt32 {
        var crc: UInt32 = 0xffff_ffff
        for byte in data {
            crc = crcTable[Int((crc ^ UInt32(byte)) & 0xff)] ^ (crc >> 8)
        }
        return crc ^ 0xffff_ffff
    }

    private static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xedb8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    private static func le16(_ v: UInt16) -> Data { Data([UInt8(v & 0xff), UInt8(v >> 8)]) }
    private static func le32(_ v: UInt32) -> Data { Data((0..<4).map { UInt8((v >> (8 * $0)) & 0xff) }) }
}
