import Foundation

/// NumPy's `.npy` arrays and `.npz` archives (a ZIP of `.npy` members), written and read for float32 model
/// tensors: the formats `numpy.load` and `numpy.savez` use, without pickling. Pure: bytes in, bytes out.
/// Format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
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

    /// Why `npz` cannot write an archive: the plain ZIP format it writes (no zip64) holds at most 65,535
    /// members of names up to 65,535 bytes, in an archive under 4 GiB.
    public enum WriteError: Error, Hashable, Sendable, CustomStringConvertible {
        case tooLarge(String)
        public var description: String { "cannot write the .npz archive: \(self.detail)" }
        private var detail: String { switch self { case .tooLarge(let what): what } }
    }

    /// An `.npz` archive with one `NAME.npy` member per array (stored, not deflated; CRC-32 checked by readers).
    /// Every size is checked against the ZIP fields before anything is written: no conversion can trap.
    public static func npz(_ arrays: [Array]) throws(WriteError) -> Data {
        guard arrays.count <= Int(UInt16.max) else { throw .tooLarge("\(arrays.count) arrays (at most 65535)") }
        var total = 22
        for array in arrays {
            let nameBytes = array.name.utf8.count + 4
            guard nameBytes <= Int(UInt16.max) else { throw .tooLarge("array name of \(nameBytes) bytes (at most 65535)") }
            total += 30 + 46 + 2 * nameBytes + 256 + 4 * array.values.count   // headers, names, the .npy header (under 256 bytes for rank ≤ 8), data
        }
        guard total <= Int(UInt32.max) else { throw .tooLarge("\(total) bytes (at most 4 GiB without zip64)") }
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

    // MARK: Reading

    /// Why an `.npz` file cannot be read as a model. Every message says what to do.
    public enum ReadError: Error, Hashable, Sendable, CustomStringConvertible {
        case notAZipArchive
        case compressed(member: String)
        case damaged(member: String, detail: String)
        case notANumPyArray(member: String)
        case unsupportedType(member: String, descr: String)
        case fortranOrder(member: String)
        case duplicateName(String)
        case empty
        case tooLarge(member: String)

        public var description: String {
            switch self {
            case .notAZipArchive: "not an .npz archive (no ZIP directory found): write it with numpy.savez(path, name=array, …)"
            case .compressed(let m): "member \(m) is compressed: write the model with numpy.savez, not numpy.savez_compressed"
            case .damaged(let m, let d): "member \(m) is damaged (\(d)): write the file again"
            case .notANumPyArray(let m): "member \(m) is not a .npy array"
            case .unsupportedType(let m, let d): "array \(m) has dtype \(d); model tensors are float32: save array.astype(numpy.float32)"
            case .fortranOrder(let m): "array \(m) is in Fortran order: save numpy.ascontiguousarray(array)"
            case .duplicateName(let n): "the archive holds two arrays named \(n)"
            case .empty: "the archive holds no arrays"
            case .tooLarge(let m): "array \(m) is larger than a model tensor may be"
            }
        }
    }

    /// The arrays of an `.npz` archive in the order its directory lists them (numpy.savez keeps the keyword
    /// order). Accepts stored (uncompressed) members holding little-endian float32 arrays in C order; checks
    /// every CRC-32 and every size against the bytes there are. Never traps on a damaged file.
    public static func read(_ data: Data) throws(ReadError) -> [Array] {
        let bytes = [UInt8](data)
        // The end-of-central-directory record: the last one, within the last 64 KiB + 22 bytes.
        var end = -1
        var i = bytes.count - 22
        while i >= max(0, bytes.count - 65_557) {
            if u32(bytes, i) == 0x06054b50 { end = i; break }
            i -= 1
        }
        guard end >= 0 else { throw .notAZipArchive }
        let entries = Int(u16(bytes, end + 10)), directoryOffset = Int(u32(bytes, end + 16))
        var arrays: [Array] = []
        var at = directoryOffset
        for _ in 0..<entries {
            guard at + 46 <= bytes.count, u32(bytes, at) == 0x02014b50 else { throw .notAZipArchive }
            let method = u16(bytes, at + 10), crc = u32(bytes, at + 16)
            let compressedSize = Int(u32(bytes, at + 20)), size = Int(u32(bytes, at + 24))
            let nameLength = Int(u16(bytes, at + 28)), extraLength = Int(u16(bytes, at + 30)), commentLength = Int(u16(bytes, at + 32))
            let localOffset = Int(u32(bytes, at + 42))
            guard at + 46 + nameLength <= bytes.count else { throw .notAZipArchive }
            let member = String(decoding: bytes[(at + 46)..<(at + 46 + nameLength)], as: UTF8.self)
            at += 46 + nameLength + extraLength + commentLength
            guard method == 0 else { throw .compressed(member: member) }
            guard compressedSize == size, localOffset + 30 <= bytes.count, u32(bytes, localOffset) == 0x04034b50 else {
                throw .damaged(member: member, detail: "sizes or local header")
            }
            let start = localOffset + 30 + Int(u16(bytes, localOffset + 26)) + Int(u16(bytes, localOffset + 28))
            guard start + size <= bytes.count else { throw .damaged(member: member, detail: "the file ends inside it") }
            let payload = Data(bytes[start..<(start + size)])
            guard crc32(payload) == crc else { throw .damaged(member: member, detail: "CRC-32 mismatch") }
            let name = member.hasSuffix(".npy") ? String(member.dropLast(4)) : member
            guard !arrays.contains(where: { $0.name == name }) else { throw .duplicateName(name) }
            arrays.append(try readNpy(payload, member: member, name: name))
        }
        guard !arrays.isEmpty else { throw .empty }
        return arrays
    }

    /// One `.npy` member: versions 1.0–3.0, descr `<f4` (or `=f4`, `f4`), C order, any shape whose element
    /// count the data holds exactly.
    static func readNpy(_ data: Data, member: String, name: String) throws(ReadError) -> Array {
        let b = [UInt8](data)
        guard b.count >= 10, b[0] == 0x93, Swift.Array(b[1..<6]) == Swift.Array("NUMPY".utf8) else { throw .notANumPyArray(member: member) }
        let major = b[6]
        let headerLength = major == 1 ? Int(u16(b, 8)) : Int(u32(b, 8))
        let headerStart = major == 1 ? 10 : 12
        guard (1...3).contains(major), headerStart + headerLength <= b.count else { throw .notANumPyArray(member: member) }
        let header = String(decoding: b[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        guard let descr = literal(after: "'descr':", in: header)?.trimmingCharacters(in: CharacterSet(charactersIn: "'\" ")) else {
            throw .notANumPyArray(member: member)
        }
        guard ["<f4", "=f4", "f4", "float32"].contains(descr) else { throw .unsupportedType(member: name, descr: descr) }
        guard let fortran = literal(after: "'fortran_order':", in: header) else { throw .notANumPyArray(member: member) }
        guard fortran.trimmingCharacters(in: .whitespaces) == "False" else { throw .fortranOrder(member: name) }
        guard let shapeText = literal(after: "'shape':", in: header) else { throw .notANumPyArray(member: member) }
        let dimensions = shapeText.trimmingCharacters(in: CharacterSet(charactersIn: "() ")).split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        var shape: [Int] = []
        var count = 1
        for dimension in dimensions {
            guard let d = Int(dimension), d >= 0 else { throw .notANumPyArray(member: member) }
            let (product, overflow) = count.multipliedReportingOverflow(by: d)
            guard !overflow, product <= Int(Int32.max) else { throw .tooLarge(member: name) }
            shape.append(d)
            count = product
        }
        let dataStart = headerStart + headerLength
        guard b.count - dataStart == count * 4 else { throw .damaged(member: member, detail: "\(b.count - dataStart) data bytes for \(count) float32 values") }
        var values = [Float](repeating: 0, count: count)
        for k in 0..<count { values[k] = Float(bitPattern: u32(b, dataStart + 4 * k)) }
        return Array(name: name, shape: shape, values: values)
    }

    /// The text of a header dictionary's value after `key`, up to the next top-level comma (a shape's
    /// parentheses kept whole).
    private static func literal(after key: String, in header: String) -> String? {
        guard let range = header.range(of: key) else { return nil }
        var depth = 0
        var value = ""
        for character in header[range.upperBound...] {
            if character == "(" { depth += 1 }
            if character == ")" { depth -= 1 }
            if (character == "," && depth == 0) || character == "}" { break }
            value.append(character)
        }
        return value.trimmingCharacters(in: .whitespaces)
    }

    private static func u16(_ b: [UInt8], _ i: Int) -> UInt16 {
        guard i >= 0, i + 2 <= b.count else { return 0 }
        return UInt16(b[i]) | UInt16(b[i + 1]) << 8
    }

    private static func u32(_ b: [UInt8], _ i: Int) -> UInt32 {
        guard i >= 0, i + 4 <= b.count else { return 0 }
        return UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
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
