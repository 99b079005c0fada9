import NIOCore
import StrataCore

/// Top-k sparsification: the `k = max(1, round(fraction · n))` values of largest magnitude travel with their flat indices,
/// the others are zero. 8 bytes per kept value, so `fraction` 0.01 is 50× smaller than float32. Lossy: the
/// agent keeps the values it did not send and adds them to its next delta (error feedback, `ErrorFeedback`),
/// so every coordinate is sent once it has accumulated enough.
///
/// Body: `u32 k` (≤ n), `k` × `u32 index` (strictly ascending, < n), `k` × `f32 value`.
struct TopKEncoding: TensorEncoding {
    static let kind = TensorEncodingKind.topK

    var fraction: Float

    func encode(_ values: UnsafeBufferPointer<Float>, into buffer: inout ByteBuffer) {
        let k = min(values.count, max(1, Int((Double(fraction) * Double(values.count)).rounded())))
        let kept = Self.largest(k, of: values)
        buffer.writeInteger(UInt32(kept.count), endianness: .little)
        for index in kept { buffer.writeInteger(UInt32(index), endianness: .little) }
        for index in kept { buffer.writeInteger(values[index].bitPattern, endianness: .little) }
    }

    /// The indices of the `k` largest magnitudes, ascending (ties broken towards lower indices).
    static func largest(_ k: Int, of values: UnsafeBufferPointer<Float>) -> [Int] {
        guard k < values.count else { return Array(0..<values.count) }
        guard k > 0 else { return [] }
        // The k-th largest magnitude by selection (expected linear time), then one pass in index order.
        var magnitudes = values.map { $0.isNaN ? Float.infinity : abs($0) }
        let threshold = select(&magnitudes, rank: values.count - k)
        var above = 0
        for value in values where (value.isNaN ? Float.infinity : abs(value)) > threshold { above += 1 }
        var ties = k - above
        var kept: [Int] = []
        kept.reserveCapacity(k)
        for (i, value) in values.enumerated() {
            let magnitude = value.isNaN ? Float.infinity : abs(value)
            if magnitude > threshold {
                kept.append(i)
            } else if magnitude == threshold, ties > 0 {
                kept.append(i)
                ties -= 1
            }
        }
        return kept
    }

    /// The value of rank `rank` (0-based, ascending) of `values`, which it reorders (Hoare's quickselect).
    static func select(_ values: inout [Float], rank: Int) -> Float {
        var low = 0, high = values.count - 1
        var generator = SeededGenerator(seed: UInt64(values.count))
        while low < high {
            let pivot = values[low + Int(generator.next() % UInt64(high - low + 1))]
            var i = low, j = high
            while i <= j {
                while values[i] < pivot { i += 1 }
                while values[j] > pivot { j -= 1 }
                if i <= j { values.swapAt(i, j); i += 1; j -= 1 }
            }
            if rank <= j { high = j } else if rank >= i { low = i } else { return values[rank] }
        }
        return values[rank]
    }

    static func readBody(count: Int, from reader: inout PayloadReader, field: String) throws(WireError) -> ByteBuffer {
        let start = reader.buffer.readerIndex
        let k = Int(try reader.u32(field + ".k"))
        guard k <= count else { throw .invalidValue(field: field + ".k", reason: "\(k) values kept of \(count)") }
        guard reader.buffer.readableBytes >= 8 * k else { throw .truncated(field: field + ".values") }
        var previous = -1
        for i in 0..<k {
            let index = Int(try reader.u32(field + ".indices[\(i)]"))
            guard index > previous, index < count else {
                throw .invalidValue(field: field + ".indices[\(i)]", reason: "index \(index) is not ascending or not below \(count)")
            }
            previous = index
        }
        reader.buffer.moveReaderIndex(forwardBy: 4 * k)
        // Readers may not look behind the reader index: go back to the start to take the body as one slice.
        reader.buffer.moveReaderIndex(to: start)
        return reader.buffer.readView(length: 4 + 8 * k)!
    }

    static func decode(_ body: ByteBuffer, into out: UnsafeMutableBufferPointer<Float>) {
        out.initialize(repeating: 0)
        body.withUnsafeReadableBytes { raw in
            let k = Int(UInt32(littleEndian: raw.loadUnaligned(as: UInt32.self)))
            for i in 0..<k {
                let index = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 + 4 * i, as: UInt32.self)))
                out[index] = Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 4 + 4 * k + 4 * i, as: UInt32.self)))
            }
        }
    }
}

