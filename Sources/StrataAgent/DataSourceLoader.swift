import Foundation
import StrataData

/// Runs a data source's blocking read on a thread of its own, so that a slow query (a server database, a large
/// table) holds neither an event loop nor a thread of Swift's cooperative pool: heartbeats, timers and the
/// session's I/O go on while it runs.
public enum DataSourceLoader {
    public static func load(_ source: any DataSource) async throws -> LoadedSamples {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<LoadedSamples, any Error>) in
            let thread = Thread {
                continuation.resume(with: Result { try source.load() })
            }
            thread.name = "strata.data"
            thread.stackSize = 8 << 20
            thread.start()
        }
    }
}
