import NIOCore

/// 8-bit linear quantisation in blocks: each block of `blockSize` values travels as its minimum `low` and
/// `step = (max − low) / 255` (float32 each) and one code per value, `value ≈ low + code · step`, so the
/// error of a value is at most `step / 2`. About 3.9× smaller than float32 with blocks of 256. Lossy: the
/// agent keeps what was lost and adds it to its next delta (error feedback, `ErrorFeedback`).
///
/// Body: `u32 blockSize` (1 … 65536), then for each of the ⌈n / blockSize⌉ blocks `f32 low`, `f32 step`,
/// then `n` codes (`u8`).
struct Q8BlockEncoding: TensorEncoding {
    static let kind = TensorEncodingKind.q8
    static let defaultBlockSize = 256
    static let maxBlockSize = 65536

    var blockSize: Int

    func encode(_ values: UnsafeBufferPointer<Float>, into buffer: inout ByteBuffer) {
        precondition(blockSize >= 1 && blockSize <= Self.maxBlockSize)
        buffer.writeInteger(UInt32(blockSize), endianness: .little)
        var steps: [(low: Float, step: Float)] = []
        var start = 0
        while start < values.count {
            let block = values[start ..< min(values.count, start + blockSize)]
            let low = block.min()!, high = block.max()!
            let step = (high - low) / 255
            steps.append((low, step))
            buffer.writeInteger(low.bitPattern, endianness: .little)
            buffer.writeInteger(step.bitPattern, endianness: .little)
            start += blockSize
        }
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: values.count) { raw in
            for (i, value) in values.enumerated() {
                let (low, step) = steps[i / blockSize]
                var code: Float = step > 0 && step.isFinite ? ((value - low) / step).rounded() : 0
                if !(code >= 0) { code = 0 }  // also NaN: the sender's problem, the receiver checks values anyway
                raw[i] = UInt8(min(code, 255))
            }
            return values.count
        }
    }

    static func readBody(count: Int, from reader: inout PayloadReader, field: String) throws(WireError) -> ByteBuffer {
        let start = reader.buffer.readerIndex
        let blockSize = Int(try reader.u32(field + ".blockSize"))
        guard blockSize >= 1, blockSize <= maxBlockSize else {
            throw .invalidValue(field: field + ".blockSize", reason: "\(blockSize) is not in 1 … \(maxBlockSize)")
        }
        let blocks = count / blockSize + (count % blockSize == 0 ? 0 : 1)
        let length = 4 + 8 * blocks + count
        reader.buffer.moveReaderIndex(to: start)
        guard let body = reader.buffer.readView(length: length) else { throw .truncated(field: field + ".codes") }
        return body
    }

    static func decode(_ body: ByteBuffer, into out: UnsafeMutableBufferPointer<Float>) {
        body.withUnsafeReadableBytes { raw in
            let blockSize = Int(UInt32(littleEndian: raw.loadUnaligned(as: UInt32.self)))
            let blocks = out.count / blockSize + (out.count % blockSize == 0 ? 0 : 1)
            let codes = 4 + 8 * blocks
            for b in 0..<blocks {
                let low = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 + 8 * b, as: UInt32.self)))
                let step = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8 + 8 * b, as: UInt32.self)))
                for i in b * blockSize ..< min(out.count, (b + 1) * blockSize) {
                    out[i] = low + Float(raw[codes + i]) * step
                }
            }
        }
    }
}
