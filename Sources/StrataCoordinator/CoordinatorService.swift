import Dispatch
import Foundation
import Logging
import NIOCore
import NIOPosix
import StrataStore
import StrataTransport

/// Wires the store, the coordinator and the agent server together and runs them until the federation
/// stops. SIGINT and SIGTERM drain: agents get `goodbye` with a retry-after, state is already durable.
public enum CoordinatorService {
    public static func run(configuration: CoordinatorConfiguration, logger: Logger,
                           onEvent: @escaping @Sendable (CoordinatorEvent) -> Void) async throws -> CoordinatorSummary {
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
