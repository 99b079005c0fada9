import Foundation
import StrataData
#if canImport(Glibc)
import Glibc
#endif

/// Runs a data source's blocking read on a thread of its own, so that a slow query (a server database, a large
/// table) holds neither an event loop nor a thread of Swift's cooperative pool: heartbeats, timers and the
/// session's I/O go on while it runs.
public enum DataSourceLoader {
    public static func load(_ source: any DataSource) async throws -> LoadedSamples {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<LoadedSamples, any Error>) in
            let thread = Thread {
                let result = Result { try source.load() }
                releaseFreedMemory()
                continuation.resume(with: result)
            }
            thread.name = "strata.data"
            thread.stackSize = 8 << 20
            thread.start()
        }
    }

    /// Gives the heap pages freed by a read back to the system. A read of a large table frees as much as it
    /// keeps (the columns while they are typed, the rows' keys and labels); glibc keeps freed blocks below its
    /// mmap threshold for reuse, so without this the agent would train with some 170 MB per million rows × 60
    /// features it no longer uses (docs/PERFORMANCE.md, "Reading a table").
    public static func releaseFreedMemory() {
        // glibc's malloc_trim (malloc.h, which Swift's Glibc module leaves out), looked up once; absent elsewhere.
        _ = mallocTrim?(0)
    }

    private typealias MallocTrim = @convention(c) (Int) -> Int32
    private static let mallocTrim: MallocTrim? = {
        #if canImport(Glibc)
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return nil }   // RTLD_DEFAULT
        return unsafeBitCast(symbol, to: MallocTrim.self)
        #else
        return nil
        #endif
    }()
}
