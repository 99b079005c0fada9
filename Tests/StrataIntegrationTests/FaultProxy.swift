import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A TCP proxy for tests that injects network faults between agents and the coordinator.
///
/// It listens on 127.0.0.1 (a free port, `port`) and forwards every accepted connection to the target
/// port, byte for byte: TLS passes through untouched. The fault in force (`set(_:)`, switchable at any
/// time from any thread) applies to every live connection and to every connection accepted later.
/// All I/O runs on one event loop that the proxy owns; nothing in it blocks.
final class FaultProxy: Sendable {
    enum Direction: Sendable, Hashable {
        /// Accepted side → target (agent → coordinator).
        case toCoordinator
        /// Target → accepted side (coordinator → agent).
        case toAgent
    }

    enum Fault: Sendable, Hashable {
        /// Forward everything at once.
        case pass
        /// Forward exactly `bytes` more bytes in `direction` (counted per connection from the moment this
        /// fault is set, or from the connection's start), then close both sides of that connection at once.
        case cutAfter(bytes: Int, Direction)
        /// Forward nothing in either direction, closes included, while keeping both TCP connections open:
        /// a hung peer. What arrives meanwhile is held and forwarded in order once the fault changes.
        case stall
        /// Forward every chunk (and a close) this long after it arrived, in order.
        case delay(Duration)
    }

    let port: Int
    private let group: MultiThreadedEventLoopGroup
    private let server: any Channel
    private let board: FaultBoard

    /// Starts listening on 127.0.0.1 (free port) and forwarding to `targetHost:targetPort`.
    init(targetPort: Int, targetHost: String = "127.0.0.1") throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let board = FaultBoard()
        do {
            server = try ServerBootstrap(group: group)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
                .childChannelInitializer { client in
                    board.accepted()
                    // The accepted channel is registered (and read) only once this future succeeds, so no byte
                    // arrives before its relay is in place. The target side reads once the client side is active.
                    return ClientBootstrap(group: client.eventLoop)
                        .channelOption(.socketOption(.tcp_nodelay), value: 1)
                        .channelOption(.autoRead, value: false)
                        .channelInitializer { target in
                            target.eventLoop.makeCompletedFuture {
                                try target.pipeline.syncOperations.addHandler(RelayHandler(.toAgent, to: client, board: board))
                            }
                        }
                        .connect(host: targetHost, port: targetPort)
                        .flatMapThrowing { target in
                            try client.pipeline.syncOperations.addHandlers(
                                StartReading(target), RelayHandler(.toCoordinator, to: target, board: board))
                            board.register(client)
                            board.register(target)
                        }
                }
                .bind(host: "127.0.0.1", port: 0)
                .wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
        self.group = group
        self.board = board
        port = server.localAddress?.port ?? 0
    }

    /// The fault in force.
    var fault: Fault { board.state.withLockedValue { $0.fault } }

    /// Switches the fault for every live connection and every later one.
    func set(_ fault: Fault) {
        let live = board.state.withLockedValue { state -> [any Channel] in
            state.fault = fault
            state.generation += 1
            return Array(state.live.values)
        }
        for channel in live { channel.pipeline.fireUserInboundEventTriggered(FaultChanged()) }
    }

    /// Closes every live connection (both sides) now.
    func cutAll() {
        for channel in board.state.withLockedValue({ Array($0.live.values) }) { channel.close(promise: nil) }
    }

    /// Connections accepted so far.
    var acceptedCount: Int { board.state.withLockedValue { $0.accepted } }

    /// Connections closed by a `.cutAfter` fault so far.
    var cutCount: Int { board.state.withLockedValue { $0.cuts } }

    /// Stops listening, closes every connection and the event loop. Safe to call twice.
    func shutdown() {
        guard board.state.withLockedValue({ state in defer { state.shutDown = true }; return !state.shutDown }) else { return }
        try? server.close().wait()
        cutAll()
        try? group.syncShutdownGracefully()
    }
}

/// Tells a relay that the fault changed (fired into every live channel's pipeline).
private struct FaultChanged: Sendable {}

/// The proxy state shared by its handlers: the fault in force, the live channels, counters.
private final class FaultBoard: Sendable {
    struct State {
        var fault: FaultProxy.Fault = .pass
        /// Incremented on every `set`, so a `.cutAfter` budget starts again even if the same fault is set twice.
        var generation = 0
        var live: [ObjectIdentifier: any Channel] = [:]
        var accepted = 0
        var cuts = 0
        var shutDown = false
    }
    let state = NIOLockedValueBox(State())

    var current: (fault: FaultProxy.Fault, generation: Int) { state.withLockedValue { ($0.fault, $0.generation) } }

    func accepted() { state.withLockedValue { $0.accepted += 1 } }
    func countCut() { state.withLockedValue { $0.cuts += 1 } }

    func register(_ channel: any Channel) {
        let key = ObjectIdentifier(channel)
        state.withLockedValue { $0.live[key] = channel }
        channel.closeFuture.whenComplete { _ in self.state.withLockedValue { _ = $0.live.removeValue(forKey: key) } }
    }
}

/// Forwards what one side of a connection reads (bytes, then its close) to the other side, under the
/// fault in force. One instance per direction; both sides of a connection live on the same event loop.
private final class RelayHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer

    private enum Item {
        case bytes(ByteBuffer)
        case close
    }

    private let direction: FaultProxy.Direction
    private let peer: any Channel
    private let board: FaultBoard
    /// Read but not yet forwarded, oldest first, with the time it arrived.
    private var queue = CircularBuffer<(arrived: NIODeadline, item: Item)>()
    private var timer: Scheduled<Void>?
    /// Bytes still allowed through under `.cutAfter`, for the fault generation it was computed for.
    private var budget: (generation: Int, remaining: Int)?
    private var finished = false

    init(_ direction: FaultProxy.Direction, to peer: any Channel, board: FaultBoard) {
        self.direction = direction
        self.peer = peer
        self.board = board
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        queue.append((.now(), .bytes(Self.unwrapInboundIn(data))))
        pump(context: context)
    }

    func channelInactive(context: ChannelHandlerContext) {
        queue.append((.now(), .close))
        pump(context: context)
        context.fireChannelInactive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is FaultChanged {
            pump(context: context)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)  // a reset: channelInactive forwards the close
    }

    /// Forwards whatever the fault in force lets through now, in order; schedules itself for delayed items.
    private func pump(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        while !finished, let head = queue.first {
            let (fault, generation) = board.current
            switch fault {
            case .stall:
                return
            case .delay(let delay):
                let due = head.arrived + TimeAmount(delay)
                if due > .now() {
                    timer = context.eventLoop.assumeIsolated().scheduleTask(deadline: due) { self.pump(context: context) }
                    return
                }
            case .pass, .cutAfter:
                break
            }
            queue.removeFirst()
            forward(head.item, fault: fault, generation: generation, context: context)
        }
    }

    private func forward(_ item: Item, fault: FaultProxy.Fault, generation: Int, context: ChannelHandlerContext) {
        guard case .bytes(var bytes) = item else {
            finished = true
            peer.close(promise: nil)
            return
        }
        guard case .cutAfter(let limit, let cutDirection) = fault, cutDirection == direction else {
            peer.writeAndFlush(bytes, promise: nil)
            return
        }
        if budget?.generation != generation { budget = (generation, limit) }
        let allowed = min(budget!.remaining, bytes.readableBytes)
        budget!.remaining -= allowed
        guard budget!.remaining == 0 else {
            peer.writeAndFlush(bytes, promise: nil)
            return
        }
        // The budget is spent: the last allowed bytes, then both sides close (mid-frame, as a rule).
        finished = true
        queue.removeAll()
        board.countCut()
        let peer = self.peer
        peer.writeAndFlush(bytes.readSlice(length: allowed)!).whenComplete { _ in peer.close(promise: nil) }
        context.close(promise: nil)
    }
}

/// Turns on reading of another channel once this one is active (the target side of a connection waits
/// for the accepted side, so nothing the target says first is lost).
private final class StartReading: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    private let other: any Channel

    init(_ other: any Channel) { self.other = other }

    func channelActive(context: ChannelHandlerContext) {
        other.setOption(.autoRead, value: true).whenFailure { [other] _ in other.close(promise: nil) }
        context.fireChannelActive()
    }
}

@available(*, unavailable)
extension RelayHandler: Sendable {}

@available(*, unavailable)
extension StartReading: Sendable {}
