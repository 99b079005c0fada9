import NIOCore
import StrataCore
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why an update arriving in parts could not be kept on disk. Not the peer's fault: the coordinator answers
/// `internal-error` (201) and closes the session; the agent keeps the update and sends it again later.
public struct SpoolError: Error, Sendable, Hashable, CustomStringConvertible {
    public var description: String

    init(_ what: String, directory: String, errno code: Int32) {
        description = "\(what) in the spool directory \(directory): \(String(cString: strerror(code))) (errno \(code)); free space there or point the state path elsewhere"
    }
}

/// Where a receiver keeps updates that arrive in parts (models larger than a frame) from their first part until
/// they are folded: one unlinked file per update in `directory`. A model-sized update then costs the receiver
/// one part of memory, not a model, and an update held until its buffer steps costs none
/// (docs/PERFORMANCE.md, "Models larger than a frame"). A file disappears with its last reference, and a crash
/// leaves nothing behind.
public struct UpdateSpool: Sendable, Hashable {
    public let directory: String

    public init(directory: String) {
        self.directory = directory
    }

    /// A new empty file, already unlinked.
    func create() throws(SpoolError) -> SpoolFile {
        var template = Array("\(directory)/.strata-spool-XXXXXX".utf8CString)
        let descriptor = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard descriptor >= 0 else { throw SpoolError("cannot create a file", directory: directory, errno: errno) }
        _ = fcntl(descriptor, F_SETFD, FD_CLOEXEC)   // trainers and other children never inherit it
        // Unlinked at once: the descriptor keeps the file until its last reference closes it.
        _ = template.withUnsafeBufferPointer { unlink($0.baseAddress!) }
        return SpoolFile(descriptor: descriptor, directory: directory)
    }
}

/// An unlinked file holding one message's payload: written in order while its parts arrive, then only read, by
/// offset (`pread`: readers share no position). Closed when the last reference goes.
public final class SpoolFile: Sendable {
    private let descriptor: Int32
    let directory: String

    init(descriptor: Int32, directory: String) {
        self.descriptor = descriptor
        self.directory = directory
    }

    deinit {
        close(descriptor)
    }

    /// Writes all of `bytes` at `offset`.
    func write(_ bytes: ByteBuffer, at offset: Int) throws(SpoolError) {
        let failure: Int32? = bytes.withUnsafeReadableBytes { raw in
            var done = 0
            while done < raw.count {
                let n = pwrite(descriptor, raw.baseAddress! + done, raw.count - done, off_t(offset + done))
                if n < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                done += n
            }
            return nil
        }
        if let failure { throw SpoolError("cannot write an update being received", directory: directory, errno: failure) }
    }

    /// Fills `target` with the bytes at `offset`.
    func read(at offset: Int, into target: UnsafeMutableRawBufferPointer) throws(SpoolError) {
        var done = 0
        while done < target.count {
            let n = pread(descriptor, target.baseAddress! + done, target.count - done, off_t(offset + done))
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { throw SpoolError("cannot read back a received update", directory: directory, errno: n < 0 ? errno : EIO) }
            done += n
        }
    }

    /// The `count` bytes at `offset`, in a buffer of their own.
    func read(at offset: Int, count: Int) throws(SpoolError) -> ByteBuffer {
        var buffer = ByteBuffer.exactCapacity(count)
        var failure: SpoolError?
        buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: count) { raw in
            do throws(SpoolError) {
                try read(at: offset, into: UnsafeMutableRawBufferPointer(rebasing: raw[..<count]))
                return count
            } catch {
                failure = error
                return 0
            }
        }
        if let failure { throw failure }
        return buffer
    }
}

/// An update's tensor values where they lie in its spool file: validation and the fold read them in chunks of
/// `chunkBytes`, so neither ever holds more than a chunk of them in memory.
public struct SpooledTensors: Float32Segments, Hashable {
    /// One tensor: its name and shape as the update gave them, and where its values start in the file.
    public struct Tensor: Sendable, Hashable {
        public var name: String
        public var shape: [Int]
        var offset: Int
        public var elementCount: Int { shape.reduce(1, *) }
    }

    public let file: SpoolFile
    public let tensors: [Tensor]
    public let count: Int

    /// Bytes read per segment.
    static let chunkBytes = 4 << 20

    init(file: SpoolFile, tensors: [Tensor]) {
        self.file = file
        self.tensors = tensors
        count = tensors.reduce(0) { $0 + $1.elementCount }
    }

    /// Calls `body` with consecutive chunks of at most `chunkBytes`, each within one tensor. The file was written
    /// by this process and is read back from the page cache; a read that fails all the same (the disk failed
    /// under it) stops the process, as a half-folded sum cannot be trusted: the coordinator restarts from its
    /// durable state and the agent sends the update again (exactly-once, docs/OPERATIONS.md).
    public func forEachSegment(_ body: (UnsafeRawBufferPointer) throws -> Void) rethrows {
        let largest = tensors.map { $0.elementCount * 4 }.max() ?? 0
        guard largest > 0 else { return }
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: min(Self.chunkBytes, largest), alignment: 64)
        defer { scratch.deallocate() }
        for tensor in tensors {
            let total = tensor.elementCount * 4
            var done = 0
            while done < total {
                let chunk = UnsafeMutableRawBufferPointer(rebasing: scratch[..<min(scratch.count, total - done)])
                do {
                    try file.read(at: tensor.offset + done, into: chunk)
                } catch {
                    fatalError("\(error); the coordinator stops and restarts from its durable state")
                }
                try body(UnsafeRawBufferPointer(chunk))
                done += chunk.count
            }
        }
    }

    /// The tensors read back into memory (for encoding the update again; the coordinator never does).
    public func wireTensors() throws(SpoolError) -> [WireTensor] {
        var out: [WireTensor] = []
        for tensor in tensors {
            out.append(WireTensor(name: tensor.name, shape: tensor.shape, bytes: try file.read(at: tensor.offset, count: tensor.elementCount * 4)))
        }
        return out
    }

    public static func == (a: SpooledTensors, b: SpooledTensors) -> Bool {
        a.file === b.file && a.tensors == b.tensors
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(ObjectIdentifier(file))
        hasher.combine(tensors)
    }
}

extension WireCodec {
    /// The largest tensor header: a name of up to 65,535 bytes and its length, the rank, 8 dimensions.
    static let maxTensorHeaderBytes = 2 + 65_535 + 1 + 4 * WireLimits.maxTensorRank

    /// Decodes the update payload of `length` bytes in `file` as `decodePayload` decodes it from memory: the same
    /// checks and errors; its fields, tensor headers and options are read into memory, its tensors' values stay
    /// in the file (`Update.spooledDelta`).
    static func decodeSpooledUpdate(_ file: SpoolFile, length: Int) throws -> Message {
        // taskID, baseVersion, sampleCount u64, trainLoss f32, evalSampleCount u64, evalLoss, evalAccuracy f32,
        // trainMillis u32 (PROTOCOL §3, update): a change of that layout fails SpoolTests' comparison with the
        // in-memory decoder.
        let fieldBytes = 48
        var spoolFailure: SpoolError?
        // Reads for the decoder, whose errors are `WireError`s: a failed read is kept and thrown in their place.
        func bytes(at offset: Int, count: Int) throws(WireError) -> PayloadReader {
            do {
                return PayloadReader(buffer: try file.read(at: offset, count: count))
            } catch {
                spoolFailure = error
                throw .truncated(field: "spool")
            }
        }
        var spooled: [SpooledTensors.Tensor] = []
        var reader = try PayloadReader(buffer: file.read(at: 0, count: min(length, fieldBytes)))
        var update: Update
        do {
            update = try reader.update { (r: inout PayloadReader) throws(WireError) in
                // The fixed fields came from the first bytes; the tensors field starts after them.
                var offset = fieldBytes
                var count = try bytes(at: offset, count: min(2, length - offset))
                let tensorCount = try count.tensorCount("update.delta")
                offset += 2
                for index in 0..<tensorCount {
                    let prefix = "update.delta[\(index)]"
                    var header = try bytes(at: offset, count: min(maxTensorHeaderBytes, length - offset))
                    let available = header.buffer.readableBytes
                    let (name, shape, elements) = try header.tensorHeader(prefix, maxElements: (length - offset) / 4, overLimit: .truncated(field: prefix + ".data"))
                    offset += available - header.buffer.readableBytes
                    guard elements * 4 <= length - offset else { throw .truncated(field: prefix + ".data") }
                    spooled.append(SpooledTensors.Tensor(name: name, shape: shape, offset: offset))
                    offset += elements * 4
                }
                // The options that follow the values are read from here on.
                r = try bytes(at: offset, count: length - offset)
                return []
            }
        } catch {
            if let spoolFailure { throw spoolFailure }
            throw error
        }
        guard reader.buffer.readableBytes == 0 else {
            throw WireError.trailingBytes(count: reader.buffer.readableBytes, messageType: MessageType.update.rawValue)
        }
        if update.compressedDelta != nil, !spooled.isEmpty {
            throw WireError.invalidValue(field: "update.compressedDelta", reason: "a compressed delta comes with an empty tensors field, not \(spooled.count) tensors")
        }
        if !spooled.isEmpty { update.spooledDelta = SpooledTensors(file: file, tensors: spooled) }
        return .update(update)
    }
}
