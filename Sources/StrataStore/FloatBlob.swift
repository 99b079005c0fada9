import Foundation

/// Model parameters are stored as BLOBs of little-endian IEEE 754 binary32 values, the same bytes as
/// on the wire, so a Python user can read them with `numpy.frombuffer(blob, '<f4')`.
public enum FloatBlob {
    public static func encode(_ values: [Float]) -> Data {
        #if _endian(little)
        return values.withUnsafeBytes { Data($0) }   // already little-endian binary32: one copy
        #else
        var data = Data(count: values.count * 4)
        data.withUnsafeMutableBytes { raw in
            for (i, v) in values.enumerated() {
                raw.storeBytes(of: v.bitPattern.littleEndian, toByteOffset: i * 4, as: UInt32.self)
            }
        }
        return data
        #endif
    }

    public static func decode(_ data: Data) -> [Float]? {
        guard data.count % 4 == 0 else { return nil }
        let count = data.count / 4
        #if _endian(little)
        return [Float](unsafeUninitializedCapacity: count) { out, initialized in
            data.withUnsafeBytes { raw in
                if count > 0 { UnsafeMutableRawPointer(out.baseAddress!).copyMemory(from: raw.baseAddress!, byteCount: count * 4) }
            }
            initialized = count
        }
        #else
        return data.withUnsafeBytes { raw in
            (0..<count).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
        #endif
    }
}
