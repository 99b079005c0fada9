import Dispatch
import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import StrataCore
import StrataTransport
import StrataWire

/// The agents' port: mutual TLS, then the Strata protocol. One structured task per connection.
public struct AgentServer: Sendable {
    let coordinator: Coordinator
    let configuration: CoordinatorConfiguration
    let tlsContext: TLSContext
    let logger: Logger
    /// Handshakes in progress and connections per client (ConnectionLimits.swift).
    let limits: ConnectionLimits
    /// Memory for frames being received, across all connections (StrataWire/FrameBudget.swift).
    let frameBudget: FrameBudget

    public init(coordinator: Coordinator, configuration: CoordinatorConfiguration, tlsContext: TLSContext, logger: Logger) {
        self.coordinator = coordinator
        self.configuration = configuration
        self.tlsContext = tlsContext
        self.logger = logger
        let metrics = coordinator.metrics
        limits = ConnectionLimits(settings: configuration.connectionLimits, metrics: metrics)
        let waitsSeen = NIOLockedValueBox(0)
        frameBudget = FrameBudget(capacity: configuration.connectionLimits.effectiveFrameBudget(maxFrameBytes: configuration.maxFrameBytes, maxMessageBytes: configuration.maxMessageBytes),
                                  onChange: { metrics.frameBudgetChanged($0, waitsSeen: waitsSeen) })
        metrics.frameBudgetChanged(frameBudget.snapshot, waitsSeen: waitsSeen)
    }

    /// `lastHeard`: when the peer last sent a message or a part of one (the idle timeout's clock).
    /// `handled`: tells the frame budget the session is done with the oldest message it was handed.
    typealias Connection = (channel: NIOAsyncChannel<Message, Message>, identity: EventLoopFuture<PeerIdentity>,
                            lastHeard: NIOLockedValueBox<ContinuousClock.Instant>, handled: @Sendable () -> Void)

    /// Binds, reports the address, serves until `coordinator` stops, then closes every session.
    public func run(group: any EventLoopGroup, onListening: @Sendable (String, Int) -> Void) async throws {
        let tlsContext = self.tlsContext
        let maxFrame = configuration.maxFrameBytes
        let maxMessage = configuration.maxMessageBytes
        let spool = configuration.spool
        let metrics = coordinator.metrics
        let limits = self.limits
        let frameBudget = self.frameBudget
        let logger = self.logger
        let server = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 512)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: configuration.host, port: configuration.port) { channel in
                channel.eventLoop.makeCompletedFuture { () throws -> Connection in
                    // Too many handshakes in progress: close before any TLS state exists. (A failed initializer
                    // does not close the channel by itself, and nothing of it reaches the loop below.)
                    guard limits.accept() else {
                        channel.close(promise: nil)
                        throw ConnectionRefusal.unauthenticatedLimit
                    }
                    var identity: EventLoopFuture<PeerIdentity>?
                    do {
                        try channel.pipeline.syncOperations.addHandler(ByteCountingHandler(
                            onRead: { metrics.bytesReceived.increment(by: $0) }, onWrite: { metrics.bytesSent.increment(by: $0) }))
                        let authenticated = try SecureChannel.addTLSHandlers(to: channel, context: tlsContext, serverHostname: nil)
                        identity = authenticated
                        authenticated.whenComplete { _ in
                            guard let burst = limits.handshakeEnded(), burst >= ConnectionLimits.floodThreshold else { return }
                            Self.returnMemoryAfterFlood(peak: burst, limits: limits, logger: logger)
                        }
                        // A large message keeps its reservation until its session handled it (folded or refused
                        // it): the budget then bounds updates waiting for the coordinator too, not only in transit.
                        let gate = FrameBudgetGate(budget: frameBudget, holdUntilHandled: true)
                        try channel.pipeline.syncOperations.addHandler(gate)
                        let boundGate = NIOLoopBound(gate, eventLoop: channel.eventLoop)
                        let loop = channel.eventLoop
                        let handled: @Sendable () -> Void = { loop.execute { boundGate.value.messageHandled() } }
                        let lastHeard = NIOLockedValueBox(ContinuousClock.now)
                        try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(MessageDecoder(
                            maxPayloadBytes: maxFrame, offerFrameBuffer: PlaintextReadTarget.offer, budget: gate,
                            maxFirstPayloadBytes: ConnectionLimitSettings.maxHelloPayloadBytes, messageLimit: MessageSizeLimit(maxMessage),
                            spool: spool, onPart: { lastHeard.withLockedValue { $0 = .now } })))
                        // Agents accept frames as large as ours (the welcome tells them); larger tasks go in parts.
                        try channel.pipeline.syncOperations.addHandler(MessageFrameEncoder(peerFrameLimit: MessageSizeLimit(maxFrame)))
                        // At most one decoded message waits for the session (the default holds up to 10, each
                        // up to a frame's size, outside the frame budget); the next frame is read meanwhile.
                        let async = try NIOAsyncChannel<Message, Message>(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(backPressureStrategy: .init(lowWatermark: 1, highWatermark: 1)))
                        return (async, authenticated, lastHeard, handled)
                    } catch {
                        if identity == nil { _ = limits.handshakeEnded() }  // else its failure counts it
                        channel.close(promise: nil)
                        throw error
                    }
                }
            }
        let port = server.channel.localAddress?.port ?? configuration.port
        logger.info("listening for agents", metadata: ["host": "\(configuration.host)", "port": "\(port)"])
        onListening(configuration.host, port)

        // Deadlines (rounds, buffers, re-tiering, evaluation timer, time limit) need a clock even when no update arrives.
        let interval = configuration.tickInterval
        let ticker = Task {
            while (try? await Task.sleep(for: interval)) != nil {
                await coordinator.tick()
            }
        }
        defer { ticker.cancel() }
        try await withThrowingDiscardingTaskGroup { group in
            group.addTask {
                await coordinator.waitUntilStopped()
                try? await server.channel.close()
            }
            try await server.executeThenClose { inbound in
                for try await connection in inbound {
                    group.addTask { await serve(connection) }
                }
            }
            // The stop queued every session's goodbye and closed its mailbox. The sessions are not cancelled: each
            // ends once its writer has sent what was queued (within 5 s even if the peer stopped reading), and a
            // connection still in its handshake or before its hello ends at its timeout. Cancelling them here lost
            // the goodbye of some agents, which then retried a coordinator that was gone.
            ticker.cancel()
        }
    }

    func serve(_ connection: Connection) async {
        let remote = connection.channel.channel.remoteAddress.map { "\($0)" } ?? "unknown"
        var log = logger
        log[metadataKey: "peer"] = "\(remote)"
        do {
            try await connection.channel.executeThenClose { inbound, outbound in
                let identity: PeerIdentity
                do {
                    identity = try await connection.identity.get()
                } catch {
                    coordinator.metrics.handshakeFailures(endpoint: "agents", reason: (error as? TLSError)?.kind.label ?? "connection-closed").increment()
                    log.info("TLS handshake failed", metadata: ["error": "\(error)"])
                    return
                }
                log[metadataKey: "client"] = "\(identity.commonName)"
                guard identity.role == .agent else {
                    coordinator.metrics.handshakeFailures(endpoint: "agents", reason: "wrong-role").increment()
                    log.warning("refused a non-agent certificate on the agent port", metadata: ["role": "\(identity.role.rawValue)"])
                    try await outbound.write(.error(ErrorMessage(code: .notAuthorized,
                        message: "this port admits agent certificates; yours has role \(identity.role.rawValue)")))
                    return
                }
                guard limits.admit(client: identity.commonName) else {
                    let most = limits.settings.maxPerClient
                    log.warning("refused a connection: too many connections for this client", metadata: ["limit": "\(most)"])
                    try await outbound.write(.error(ErrorMessage(code: .tooManyConnections,
                        message: "this client already has \(most) connections open (--max-connections-per-client); close them or retry later")))
                    return
                }
                defer { limits.closed(client: identity.commonName) }
                try await runSession(clientID: identity.commonName, channel: connection.channel.channel, inbound: inbound, outbound: outbound,
                                     lastHeard: connection.lastHeard, handled: connection.handled, logger: log)
            }
        } catch {
            log.info("session ended with an error", metadata: ["error": "\(error)"])
        }
    }

    /// One admitted-or-not session. Three jobs: this task writes the mailbox to the socket, the reader feeds
    /// the coordinator, the clock enforces the hello and idle timeouts and sends heartbeat requests. Whoever
    /// ends the session puts its final frame (error or goodbye) into the mailbox and closes it, and the writer
    /// (never cancelled) sends everything queued before the connection closes: every refusal reaches the peer.
    private func runSession(clientID: String, channel: any Channel, inbound: NIOAsyncChannelInboundStream<Message>,
                            outbound: NIOAsyncChannelOutboundWriter<Message>, lastHeard: NIOLockedValueBox<ContinuousClock.Instant>,
                            handled: @escaping @Sendable () -> Void, logger: Logger) async throws {
        let (mailbox, mailboxContinuation) = AsyncStream<Message>.makeStream()
        let started = ContinuousClock.now
        lastHeard.withLockedValue { $0 = started }
        let session = NIOLockedValueBox<(handle: AgentSessionHandle, at: ContinuousClock.Instant)?>(nil)
        let endReason = NIOLockedValueBox<String?>(nil)
        let coordinator = self.coordinator
        let timing = SessionClock(helloTimeout: configuration.helloTimeout, idleTimeout: configuration.sessionIdleTimeout,
                                  heartbeatInterval: configuration.heartbeatInterval)

        /// Ends the session once (the first reason wins): queues `final`, closes the mailbox, and closes the
        /// connection after a grace period in case a peer that stopped reading keeps the writer waiting.
        @Sendable func end(_ reason: String, sending final: Message? = nil) {
            let first = endReason.withLockedValue { current -> Bool in
                guard current == nil else { return false }
                current = reason
                return true
            }
            guard first else { return }
            if let final { mailboxContinuation.yield(final) }
            mailboxContinuation.finish()
            channel.eventLoop.scheduleTask(in: .seconds(5)) { channel.close(promise: nil) }
        }

        await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                var clock = timing
                while true {
                    let action = clock.next(now: .now, started: started, lastHeard: lastHeard.withLockedValue { $0 },
                                            admittedAt: session.withLockedValue { $0?.at })
                    switch action {
                    case .wait(let delay):
                        try await Task.sleep(for: delay)
                    case .sendHeartbeat(let sequence):
                        mailboxContinuation.yield(.heartbeat(Heartbeat(sequence: sequence, timestampNanos: UInt64(DispatchTime.now().uptimeNanoseconds), isReply: false)))
                    case .close(let error, let reason):
                        end(reason, sending: .error(error))
                        return
                    }
                }
            }
            group.addTask {
                do {
                    var messages = inbound.makeAsyncIterator()
                    while var message = try await messages.next() {
                        defer { handled() }   // every message, whichever way this iteration ends
                        lastHeard.withLockedValue { $0 = .now }
                        if let current = session.withLockedValue({ $0?.handle }) {
                            // An update is handed over, not copied: `message` keeps none of its bytes (see UpdateDelivery).
                            if let delivery = message.takeUpdate().map({ UpdateDelivery($0) }) {
                                await runToCompletion { await coordinator.handleUpdate(delivery, from: current) }
                                continue
                            }
                            switch message {
                            case .update:
                                preconditionFailure("updates are delivered above")
                            case .heartbeat(let beat):
                                if !beat.isReply {
                                    current.send(.heartbeat(Heartbeat(sequence: beat.sequence, timestampNanos: beat.timestampNanos, isReply: true)))
                                }
                            case .goodbye(let goodbye):
                                end("agent said goodbye: \(goodbye.message)")
                                return
                            case .error(let error):
                                end("peer sent error \(error.code): \(error.message)")
                                return
                            case .hello, .welcome, .task, .ack, .part:   // parts never leave the decoder
                                end("protocol violation: unexpected \(message.type)", sending: .error(ErrorMessage(code: .unexpectedMessage,
                                    message: "unexpected \(message.type) message in an established session")))
                                return
                            }
                        } else {
                            guard case .hello(let hello) = message else {
                                end("protocol violation: first message \(message.type)", sending: .error(ErrorMessage(code: .unexpectedMessage,
                                    message: "the first message must be hello, got \(message.type)")))
                                return
                            }
                            switch await runToCompletion({ await coordinator.admit(clientID: clientID, hello: hello, mailbox: mailboxContinuation, lastHeard: lastHeard) }) {
                            case .refuse(let error):
                                end("refused: \(error.code) \(error.message)", sending: .error(error))
                                return
                            case .over(let goodbye):
                                end("the federation is over", sending: .goodbye(goodbye))
                                return
                            case .welcome(_, let handle):
                                // `admit` queued the welcome itself, before any task could be.
                                session.withLockedValue { $0 = (handle, .now) }
                                await runToCompletion { await coordinator.sessionStarted(handle) }
                            }
                        }
                    }
                    end("connection closed")
                } catch let error as WireError {
                    end("\(error)", sending: .error(ErrorMessage(code: error.errorCode, message: error.description)))
                } catch let error as SpoolError {
                    // Not the agent's fault: it keeps the update and sends it again after reconnecting.
                    logger.error("cannot keep an update being received", metadata: ["error": "\(error)"])
                    end("\(error)", sending: .error(ErrorMessage(code: .internalError, message: "the coordinator could not keep the update being received; send it again later")))
                } catch {
                    end("\(error)")
                }
            }
            defer { group.cancelAll() }
            // Writer: ends when the mailbox is closed (after the final frame, if any) or the socket fails.
            do {
                for await message in mailbox {
                    try await outbound.write(message)
                }
            } catch {
                end("write failed: \(error)")
            }
        }
        let reason = endReason.withLockedValue { $0 } ?? "connection closed"
        if let handle = session.withLockedValue({ $0?.handle }) {
            await coordinator.sessionEnded(handle, reason: reason)
        }
        logger.debug("session closed", metadata: ["reason": "\(reason)"])
    }
}

extension AgentServer {
    /// After a burst of at least `ConnectionLimits.floodThreshold` concurrent handshakes, once none is left
    /// in progress for a second: the flood's connections are gone, so return their freed memory to the system.
    static func returnMemoryAfterFlood(peak: Int, limits: ConnectionLimits, logger: Logger) {
        DispatchQueue.global().asyncAfter(deadline: .now() + 1) {
            guard limits.unauthenticated == 0 else { return }
            let before = ResidentMemory.current()
            Allocator.returnFreeMemory()
            let after = ResidentMemory.current()
            logger.notice("connection burst over; returned free memory to the system", metadata: [
                "peakHandshakes": "\(peak)",
                "rssBeforeMiB": "\(before.map { String($0 >> 20) } ?? "?")",
                "rssAfterMiB": "\(after.map { String($0 >> 20) } ?? "?")",
            ])
        }
    }
}

/// Why the agent port closed a connection at accept.
enum ConnectionRefusal: Error, CustomStringConvertible {
    case unauthenticatedLimit
    var description: String { "too many connections in the TLS handshake (--max-unauthenticated-connections)" }
}

/// Runs coordinator work that a received message started to its end, even if the session is torn down
/// meanwhile: the reader's task is then cancelled, and a cancelled store access inside the coordinator (a
/// task being recorded for any agent, say) would be taken for a storage failure and stop the federation.
private func runToCompletion<T: Sendable>(_ work: @escaping @Sendable () async -> T) async -> T {
    await Task { await work() }.value
}
