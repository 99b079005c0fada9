import COpenSSL
import CStrataOpenSSLShim
import NIOCore

/// A custom OpenSSL `BIO` over NIO `ByteBuffer`s, used as both the read and the write BIO of one `SSL`.
///
/// - Read side: received ciphertext buffers are queued as they are (no copy); OpenSSL's record layer
///   copies each record straight out of them when it reads. An empty queue is "retry", not end of file.
/// - Write side: the ciphertext OpenSSL produces is appended straight into one outbound `ByteBuffer`,
///   which the handler takes and writes to the channel (no intermediate memory BIO, no second copy).
///
/// Nothing is retained while a connection is idle: the queue is empty and no outbound buffer exists.
/// Event-loop confined like the handler that owns it. The `BIO` refers to this object without retaining
/// it; the owner frees the `SSL` (which frees the `BIO`) before releasing this object.
final class ByteBufferBIO {
    /// The `BIO*`; owned by the `SSL` once passed to `SSL_set_bio`.
    let bio: OpaquePointer
    private var inbound = CircularBuffer<ByteBuffer>(initialCapacity: 4)
    /// Ciphertext received and not yet read by OpenSSL.
    private(set) var inboundBytes = 0
    private var outbound: ByteBuffer?
    /// Capacity of the next outbound buffer (the handler sets it before encrypting a known amount).
    var outboundCapacityHint = 0
    private let allocator: ByteBufferAllocator

    init(allocator: ByteBufferAllocator = ByteBufferAllocator()) throws {
        guard let method = ByteBufferBIOMethod.shared.method, let bio = BIO_new(method) else {
            throw TLSError(kind: .configuration, reasons: OpenSSLErrorQueue.drainStrings(), detail: "cannot create the ByteBuffer BIO")
        }
        self.bio = bio
        self.allocator = allocator
        BIO_set_data(bio, Unmanaged.passUnretained(self).toOpaque())
        BIO_set_init(bio, 1)
    }

    /// Queues received ciphertext for OpenSSL to read (the buffer is kept, not copied).
    func receive(_ buffer: ByteBuffer) {
        guard buffer.readableBytes > 0 else { return }
        inboundBytes += buffer.readableBytes
        inbound.append(buffer)
    }

    /// The ciphertext OpenSSL wrote since the last call, if any.
    func takeOutbound() -> ByteBuffer? {
        guard let buffer = outbound else { return nil }
        outbound = nil
        outboundCapacityHint = 0
        return buffer.readableBytes > 0 ? buffer : nil
    }

    var outboundBytes: Int { outbound?.readableBytes ?? 0 }

    /// Drops everything queued (the connection is gone).
    func reset() {
        inbound.removeAll()
        inboundBytes = 0
        outbound = nil
    }

    fileprivate func read(into target: UnsafeMutableRawBufferPointer) -> Int {
        var copied = 0
        while copied < target.count, var first = inbound.popFirst() {
            let take = min(first.readableBytes, target.count - copied)
            first.withUnsafeReadableBytes { source in
                (target.baseAddress! + copied).copyMemory(from: source.baseAddress!, byteCount: take)
            }
            first.moveReaderIndex(forwardBy: take)
            copied += take
            if first.readableBytes > 0 { inbound.prepend(first) }
        }
        inboundBytes -= copied
        return copied
    }

    fileprivate func write(_ source: UnsafeRawBufferPointer) {
        if outbound == nil {
            outbound = allocator.buffer(capacity: max(source.count, outboundCapacityHint, 1024))
        }
        outbound!.writeBytes(source)
    }
}

/// The `BIO_METHOD` of `ByteBufferBIO`, created once per process.
private final class ByteBufferBIOMethod: @unchecked Sendable {
    static let shared = ByteBufferBIOMethod()
    /// nil if OpenSSL could not create it (reported when a BIO is made).
    let method: OpaquePointer?

    private init() {
        let type = BIO_get_new_index() | BIO_TYPE_SOURCE_SINK
        guard let method = BIO_meth_new(type, "strata ByteBuffer") else {
            self.method = nil
            return
        }
        BIO_meth_set_write_ex(method, byteBufferBIOWrite)
        BIO_meth_set_read_ex(method, byteBufferBIORead)
        BIO_meth_set_ctrl(method, byteBufferBIOControl)
        BIO_meth_set_create(method, byteBufferBIOCreate)
        BIO_meth_set_destroy(method, byteBufferBIODestroy)
        self.method = method
    }
}

private func owner(of bio: OpaquePointer?) -> ByteBufferBIO? {
    guard let bio, let data = BIO_get_data(bio) else { return nil }
    return Unmanaged<ByteBufferBIO>.fromOpaque(data).takeUnretainedValue()
}

private func byteBufferBIOWrite(_ bio: OpaquePointer?, _ data: UnsafePointer<CChar>?, _ length: Int, _ written: UnsafeMutablePointer<Int>?) -> Int32 {
    strata_BIO_clear_retry_flags(bio)
    guard let owner = owner(of: bio), let data else { return 0 }
    owner.write(UnsafeRawBufferPointer(start: data, count: length))
    written?.pointee = length
    return 1
}

private func byteBufferBIORead(_ bio: OpaquePointer?, _ data: UnsafeMutablePointer<CChar>?, _ length: Int, _ read: UnsafeMutablePointer<Int>?) -> Int32 {
    strata_BIO_clear_retry_flags(bio)
    read?.pointee = 0
    guard let owner = owner(of: bio), let data, length > 0 else { return 0 }
    let count = owner.read(into: UnsafeMutableRawBufferPointer(start: data, count: length))
    if count == 0 {
        // Nothing buffered: ask OpenSSL to retry once more ciphertext has arrived.
        strata_BIO_set_retry_read(bio)
        return 0
    }
    read?.pointee = count
    return 1
}

private func byteBufferBIOControl(_ bio: OpaquePointer?, _ command: Int32, _ larg: Int, _ parg: UnsafeMutableRawPointer?) -> Int {
    switch command {
    case BIO_CTRL_FLUSH:
        return 1
    case BIO_CTRL_PENDING:
        return owner(of: bio)?.inboundBytes ?? 0
    case BIO_CTRL_WPENDING:
        return owner(of: bio)?.outboundBytes ?? 0
    default:
        return 0
    }
}

private func byteBufferBIOCreate(_ bio: OpaquePointer?) -> Int32 {
    1
}

private func byteBufferBIODestroy(_ bio: OpaquePointer?) -> Int32 {
    guard let bio else { return 0 }
    BIO_set_data(bio, nil)
    BIO_set_init(bio, 0)
    return 1
}
