import Dispatch
import Foundation
import Logging
import NIOCore
import NIOPosix
import StrataStore
import StrataTransport

#if canImport(Glibc)
import Glibc
#endif

/// Wires the store, the coordinator and the agent server together and runs them until the federation
/// stops. SIGINT and SIGTERM drain: agents get `goodbye` with a retry-after, state is already durable.
public enum CoordinatorService {
    public static func run(configuration: CoordinatorConfiguration, logger: Logger,
                           onEvent: @escaping @Sendable (CoordinatorEvent) -> Void) async throws -> CoordinatorSummary {
        tuneAllocator()
        let tlsContext = try TLSContext(configuration: configuration.tls, mode: .server)
        let store = try CoordinatorStore(path: configuration.statePath)
        let coordinator = Coordinator(configuration: configuration, store: store, logger: logger, onEvent: onEvent)
        try await coordinator.restore()

        let signals = installSignalHandlers { signal in
            logger.notice("received \(signal), draining")
            Task { await coordinator.drain(reason: "received \(signal)") }
        }
        defer { signals.forEach { $0.cancel() } }

        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let server = AgentServer(coordinator: coordinator, configuration: configuration, tlsContext: tlsContext, logger: logger)
        do {
            try await server.run(group: group) { host, port in onEvent(.listening(host: host, port: port)) }
        } catch {
            await coordinator.requestStop(.failure, detail: "agent server failed: \(error)")
            try? await group.shutdownGracefully()
            throw error
        }
        try? await group.shutdownGracefully()
        // Every session has ended and written its last state: fold the WAL into the database file.
        do {
            try await store.checkpoint()
        } catch {
            logger.error("final checkpoint failed", metadata: ["error": "\(error)"])
        }
        let summary = await coordinator.summary()
        onEvent(.stopped(summary))
        return summary
    }

    /// Every model-sized message (a 1M-parameter update is 4 MB) passes through a few buffers of its size. By
    /// default glibc serves such blocks with fresh mmaps (or trims them off the heap when freed), so every
    /// update paid for ~1,000 page faults of zeroed pages: 10 % of the coordinator's CPU per update. Blocks up
    /// to the largest frame come from the heap instead, and up to 512 MiB of freed heap is kept for reuse (the
    /// RSS stays at its high-water mark). The usual MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_
    /// environment variables still override this.
    static func tuneAllocator() {
        #if canImport(Glibc)
        // mallopt is in <malloc.h>, which the Glibc module does not import: look it up in the process.
        typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
        guard let process = dlopen(nil, RTLD_NOW), let symbol = dlsym(process, "mallopt") else { return }
        let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
        let trimThreshold: Int32 = -1, mmapThreshold: Int32 = -3  // M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
        if getenv("MALLOC_MMAP_THRESHOLD_") == nil { _ = mallopt(mmapThreshold, 64 << 20) }
        if getenv("MALLOC_TRIM_THRESHOLD_") == nil { _ = mallopt(trimThreshold, 512 << 20) }
        #endif
    }

    private static func installSignalHandlers(_ handler: @escaping @Sendable (String) -> Void) -> [any DispatchSourceSignal] {
        [(SIGINT, "SIGINT"), (SIGTERM, "SIGTERM")].map { number, name in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler { handler(name) }
            source.resume()
            return source
        }
    }
}
