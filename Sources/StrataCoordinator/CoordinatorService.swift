import Dispatch
import Foundation
import Logging
import NIOConcurrencyHelpers
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
        let store = try CoordinatorStore(path: configuration.statePath,
                                          pageSize: CoordinatorStore.pageSize(forModelBytes: configuration.model.parameterCount * 4))
        let metrics = configuration.metrics == nil ? CoordinatorMetrics.disabled : CoordinatorMetrics.prometheus()
        let coordinator = Coordinator(configuration: configuration, store: store, logger: logger, metrics: metrics, onEvent: onEvent)
        try await coordinator.restore()

        let signals = installSignalHandlers { signal in
            logger.notice("received \(signal), draining")
            Task { await coordinator.drain(reason: "received \(signal)") }
        }
        defer { signals.forEach { $0.cancel() } }

        // Revocation: one store for the agent and the admin port (they share `tlsContext`); SIGHUP or a change
        // of the file reloads it (SIGHUP keeps its default, terminating, action when there is no --crl).
        var revocation: (watcher: Task<Void, Never>, hangup: any DispatchSourceSignal)? = nil
        if let info = tlsContext.revocationList {
            logger.info("revocation list loaded: the agent and admin ports refuse revoked certificates", metadata: RevocationListWatcher.metadata(info))
            RevocationListWatcher.warnIfExpiringSoon(info, logger: logger)
            let watcher = RevocationListWatcher(context: tlsContext, path: info.path, logger: logger)
            let interval = configuration.revocationListPollInterval
            signal(SIGHUP, SIG_IGN)
            let hangup = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
            hangup.setEventHandler { Task { await watcher.reload(trigger: "SIGHUP") } }
            hangup.resume()
            revocation = (Task { await watcher.run(every: interval) }, hangup)
        }
        defer {
            revocation?.watcher.cancel()
            revocation?.hangup.cancel()
        }

        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        let listening = ListeningCollector(expectAdmin: configuration.admin != nil, expectMetrics: configuration.metrics != nil) {
            onEvent(.listening($0))
        }
        do {
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                if let admin = configuration.admin {
                    let service = HTTPService(name: "admin", host: admin.host, port: admin.port, tlsContext: tlsContext, logger: logger,
                                              authorize: { peer in
                                                  let refusal = AdminRoutes.authorize(peer)
                                                  if refusal != nil { metrics.handshakeFailures(endpoint: "admin", reason: "wrong-role").increment() }
                                                  return refusal
                                              },
                                              onHandshakeFailure: { error in
                                                  metrics.handshakeFailures(endpoint: "admin", reason: (error as? TLSError)?.kind.label ?? "connection-closed").increment()
                                              })
                    tasks.addTask {
                        try await service.run(group: group, until: { await coordinator.waitUntilStopped() },
                                              onListening: { listening.admin(Endpoint(host: $0, port: $1)) }) { request in
                            await AdminRoutes.handle(request, coordinator: coordinator)
                        }
                    }
                }
                if let endpoint = configuration.metrics {
                    let service = HTTPService(name: "metrics", host: endpoint.host, port: endpoint.port, tlsContext: nil, logger: logger)
                    tasks.addTask {
                        try await service.run(group: group, until: { await coordinator.waitUntilStopped() },
                                              onListening: { listening.metrics(Endpoint(host: $0, port: $1)) }) { request in
                            await MetricsRoutes.handle(request, coordinator: coordinator, metrics: metrics)
                        }
                    }
                }
                tasks.addTask {
                    let server = AgentServer(coordinator: coordinator, configuration: configuration, tlsContext: tlsContext, logger: logger)
                    try await server.run(group: group) { host, port in listening.agents(Endpoint(host: host, port: port)) }
                }
                // The first endpoint to fail (a port in use, say) stops the federation; otherwise all end when it stops.
                do {
                    while try await tasks.next() != nil {}
                } catch {
                    await coordinator.requestStop(.failure, detail: "an endpoint failed: \(error)")
                    throw error
                }
            }
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
        try? await group.shutdownGracefully()
        // Every session has ended and written its last state (evaluation rounds and the best version too):
        // fold the WAL into the database file.
        await coordinator.flushEvaluationWrites()
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

/// Reports `.listening` once every configured endpoint is bound.
private final class ListeningCollector: Sendable {
    private let state: NIOLockedValueBox<(addresses: ListeningAddresses?, agents: Endpoint?, admin: Endpoint?, metrics: Endpoint?)>
    private let expectAdmin: Bool
    private let expectMetrics: Bool
    private let report: @Sendable (ListeningAddresses) -> Void

    init(expectAdmin: Bool, expectMetrics: Bool, report: @escaping @Sendable (ListeningAddresses) -> Void) {
        self.expectAdmin = expectAdmin
        self.expectMetrics = expectMetrics
        self.report = report
        state = NIOLockedValueBox((nil, nil, nil, nil))
    }

    func agents(_ endpoint: Endpoint) { update { $0.agents = endpoint } }
    func admin(_ endpoint: Endpoint) { update { $0.admin = endpoint } }
    func metrics(_ endpoint: Endpoint) { update { $0.metrics = endpoint } }

    private func update(_ change: (inout (addresses: ListeningAddresses?, agents: Endpoint?, admin: Endpoint?, metrics: Endpoint?)) -> Void) {
        let complete = state.withLockedValue { s -> ListeningAddresses? in
            change(&s)
            guard s.addresses == nil, let agents = s.agents,
                  !expectAdmin || s.admin != nil, !expectMetrics || s.metrics != nil else { return nil }
            s.addresses = ListeningAddresses(agents: agents, admin: s.admin, metrics: s.metrics)
            return s.addresses
        }
        if let complete { report(complete) }
    }
}
