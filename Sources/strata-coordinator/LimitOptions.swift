import ArgumentParser
import NIOCore
import StrataCoordinator

/// Flags of the agent port's connection limits and of the memory for frames being received.
struct LimitOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Bytes that frames being received may hold, across all agent connections (default: 4 x (--max-frame-bytes + 8)).",
        discussion: "A frame of 256 KiB or more reserves its whole size before it is buffered beyond its start; while the budget is spent, that connection is not read from (back-pressure) until another frame completes or its connection closes. A peer that stops mid-frame is closed by --idle-timeout. Must be at least --max-frame-bytes + 8.",
        valueName: "BYTES"))
    var frameMemoryBudget: Int?
    @Option(name: .long, help: ArgumentHelp(
        "Concurrent connections per agent certificate (CN) on the agent port; more are refused with error too-many-connections (204).",
        valueName: "N"))
    var maxConnectionsPerClient: Int = 4
    @Option(name: .long, help: ArgumentHelp(
        "Connections on the agent port that have not completed the TLS handshake; more are closed as they are accepted.",
        valueName: "N"))
    var maxUnauthenticatedConnections: Int = 256
    @Option(name: .long, help: ArgumentHelp(
        "Seconds a connection has to complete the TLS handshake on the agent and admin ports; then it is closed (also one that never sends a byte).",
        valueName: "SECONDS"))
    var handshakeTimeout: Double = 10

    func check(maxFrameBytes: Int) throws {
        if let budget = frameMemoryBudget, budget < maxFrameBytes + 8 {
            throw ValidationError("--frame-memory-budget (\(budget)) must be at least --max-frame-bytes + 8 (\(maxFrameBytes + 8)): a largest frame must fit")
        }
        guard maxConnectionsPerClient >= 1 else { throw ValidationError("--max-connections-per-client must be at least 1") }
        guard maxUnauthenticatedConnections >= 1 else { throw ValidationError("--max-unauthenticated-connections must be at least 1") }
        guard handshakeTimeout > 0, handshakeTimeout <= 600 else { throw ValidationError("--handshake-timeout must be between 0 and 600 seconds") }
    }

    func apply(to config: inout CoordinatorConfiguration) {
        config.connectionLimits.frameMemoryBudget = frameMemoryBudget
        config.connectionLimits.maxPerClient = maxConnectionsPerClient
        config.connectionLimits.maxUnauthenticated = maxUnauthenticatedConnections
        config.tls.handshakeTimeout = .milliseconds(Int64(handshakeTimeout * 1000))
    }
}
