#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@_spi(CustomByteBufferAllocator) import NIOCore

extension ByteBuffer {
    /// Buffers at least this large get exactly the capacity asked for.
    static let exactCapacityThreshold = 1 << 20

    /// An empty buffer with room for exactly `capacity` bytes when it is large. NIO rounds every allocation up to
    /// a power of two: a 400 MB model would take 512 MiB in each of its buffers (the tensors of a task, a message
    /// in parts being put together). The memory comes from `malloc`, as NIO's default allocator's does, so the
    /// buffer frees (and, if it ever grew, reallocates) it the usual way.
    public static func exactCapacity(_ capacity: Int, allocator: ByteBufferAllocator = ByteBufferAllocator()) -> ByteBuffer {
        guard capacity >= exactCapacityThreshold, capacity <= Int(UInt32.max), let memory = malloc(capacity) else {
            return allocator.buffer(capacity: capacity)
        }
        return ByteBuffer(takingOwnershipOf: UnsafeMutableRawBufferPointer(start: memory, count: capacity),
                          allocator: ByteBufferAllocator(), readerIndex: 0, writerIndex: 0)
    }
}

extension ByteBuffer {
    /// The next `length` readable bytes as a buffer of their own, like `readSlice`, but never a copy. NIO keeps a
    /// slice's start in 24 bits: a slice that starts 16 MiB or more into its storage is copied (a task's second
    /// 100-MB tensor, every part of a large message after the first two). This returns the same storage with
    /// its indices moved instead.
    mutating func readView(length: Int) -> ByteBuffer? {
        guard length >= 0, readableBytes >= length else { return nil }
        var view = self
        view.moveWriterIndex(to: readerIndex + length)
        moveReaderIndex(forwardBy: length)
        return view
    }
}
