#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import NIOConcurrencyHelpers

/// One running trainer: `/bin/sh -c COMMAND` in a process group of its own, with pipes on stdin, stdout and
/// stderr. It only moves bytes, each read and write bounded by a deadline (non-blocking pipes and `poll`), so
/// a hung trainer can never hold the agent; `ExternalTrainer` decides what to do about a failure.
public final class TrainerProcess: @unchecked Sendable {
    enum Failure: Error, CustomStringConvertible {
        case cannotStart(String)
        /// stdout closed or stdin refused: the process exited (or closed its streams).
        case closed
        case timedOut(Duration)
        var description: String {
            switch self {
            case .cannotStart(let s): "cannot start the trainer: \(s)"
            case .closed: "the trainer closed its streams"
            case .timedOut(let d): "the trainer did not answer within \(d)"
            }
        }
    }

    let pid: pid_t
    /// The pipes' ends on this side; -1 once closed (never closed twice: the number may be reused).
    private let streams: NIOLockedValueBox<(input: Int32, output: Int32)>
    private var input: Int32 { streams.withLockedValue { $0.input } }
    private var output: Int32 { streams.withLockedValue { $0.output } }
    /// The last lines the trainer wrote to stderr (kept to say why it failed); written by the reader thread.
    private let stderrTail = NIOLockedValueBox<[String]>([])
    private let exited = NIOLockedValueBox<Int32?>(nil)
    static let keptStderrLines = 20

    /// Starts the command. `onStderrLine` is called (on a thread of its own) with each line it writes to stderr.
    /// `withheld`: variables of the agent's environment the trainer does not get (secrets).
    init(command: String, environment extra: [String: String], withheld: [String] = [], onStderrLine: @escaping @Sendable (String) -> Void) throws {
        // A trainer that dies while we write must become an error here, not a SIGPIPE that kills the agent.
        signal(SIGPIPE, SIG_IGN)
        var toChild: [Int32] = [0, 0], fromChild: [Int32] = [0, 0], errorsFromChild: [Int32] = [0, 0]
        guard Self.closeOnExecPipe(&toChild) == 0 else { throw Failure.cannotStart("pipe: \(String(cString: strerror(errno)))") }
        guard Self.closeOnExecPipe(&fromChild) == 0 else {
            close(toChild[0]); close(toChild[1])
            throw Failure.cannotStart("pipe: \(String(cString: strerror(errno)))")
        }
        guard Self.closeOnExecPipe(&errorsFromChild) == 0 else {
            for fd in toChild + fromChild { close(fd) }
            throw Failure.cannotStart("pipe: \(String(cString: strerror(errno)))")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, toChild[0], 0)
        posix_spawn_file_actions_adddup2(&actions, fromChild[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errorsFromChild[1], 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own process group (killed as a whole, so a shell's children go too), default signal handling
        // (SIGPIPE is ignored here, and ignored dispositions are inherited) and nothing blocked.
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        var environment = ProcessInfo.processInfo.environment
        for key in withheld { environment[key] = nil }
        for (key, value) in extra { environment[key] = value }
        let arguments = ["/bin/sh", "-c", command]
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in argv + envp { free(p) } }
        var child: pid_t = 0
        let status = posix_spawn(&child, "/bin/sh", &actions, &attributes, argv, envp)
        close(toChild[0]); close(fromChild[1]); close(errorsFromChild[1])
        guard status == 0 else {
            close(toChild[1]); close(fromChild[0]); close(errorsFromChild[0])
            throw Failure.cannotStart("posix_spawn /bin/sh: \(String(cString: strerror(status)))")
        }
        pid = child
        Self.live.withLockedValue { _ = $0.insert(child) }
        streams = NIOLockedValueBox((toChild[1], fromChild[0]))
        for fd in [toChild[1], fromChild[0]] { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        let errors = errorsFromChild[0]
        let tail = stderrTail
        Thread.detachNewThread {
            Self.readLines(errors) { line in
                tail.withLockedValue {
                    $0.append(line)
                    if $0.count > Self.keptStderrLines { $0.removeFirst($0.count - Self.keptStderrLines) }
                }
                onStderrLine(line)
            }
            close(errors)
        }
    }

    deinit {
        kill()
    }

    var lastStderrLines: [String] { stderrTail.withLockedValue { $0 } }

    /// Writes every byte before `deadline`.
    func write(_ bytes: UnsafeRawBufferPointer, deadline: ContinuousClock.Instant) throws {
        var offset = 0
        while offset < bytes.count {
            try wait(for: input, events: Int16(POLLOUT), deadline: deadline)
            let n = Glibc.write(input, bytes.baseAddress! + offset, bytes.count - offset)
            if n > 0 { offset += n; continue }
            if n < 0, errno == EAGAIN || errno == EINTR { continue }
            throw Failure.closed
        }
    }

    /// Reads exactly `count` bytes before `deadline`.
    func read(_ count: Int, deadline: ContinuousClock.Instant) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var offset = 0
        try bytes.withUnsafeMutableBytes { buffer in
            while offset < count {
                try wait(for: output, events: Int16(POLLIN), deadline: deadline)
                let n = Glibc.read(output, buffer.baseAddress! + offset, count - offset)
                if n > 0 { offset += n; continue }
                if n < 0, errno == EAGAIN || errno == EINTR { continue }
                throw Failure.closed
            }
        }
        return bytes
    }

    private func wait(for fd: Int32, events: Int16, deadline: ContinuousClock.Instant) throws {
        while true {
            let left = deadline - .now
            guard left > .zero else { throw Failure.timedOut(.zero) }
            var entry = pollfd(fd: fd, events: events, revents: 0)
            let ready = poll(&entry, 1, Int32(clamping: max(1, left.milliseconds)))
            if ready > 0 { return }   // readable, writable, or closed: the read or write says which
            if ready < 0, errno != EINTR { throw Failure.closed }
        }
    }

    /// Closes stdin (the trainer's cue to exit), waits up to `grace` for it to exit, then kills its group.
    /// Returns how it ended.
    @discardableResult
    func stop(grace: Duration) -> String {
        closeStreams(output: false)
        let deadline = ContinuousClock.now + grace
        while ContinuousClock.now < deadline {
            if let status = reap(blocking: false) { return Self.describe(status) }
            Thread.sleep(forTimeInterval: 0.02)
        }
        kill()
        return exitDescription(waiting: .seconds(1))
    }

    /// Trainers started and not yet reaped, by process id (their group ids too).
    private static let live = NIOLockedValueBox<Set<pid_t>>([])

    /// Kills every trainer's process group at once: for an agent that is being stopped by a signal, since its
    /// trainers run in groups of their own and would not get it.
    public static func killAll() {
        for pid in live.withLockedValue({ $0 }) { _ = Glibc.kill(-pid, SIGKILL) }
    }

    /// SIGKILL to the whole group; idempotent.
    func kill() {
        if exited.withLockedValue({ $0 }) == nil {
            _ = Glibc.kill(-pid, SIGKILL)
            _ = Glibc.kill(pid, SIGKILL)
            _ = reap(blocking: true)
        }
        closeStreams(output: true)
    }

    private func closeStreams(output closingOutput: Bool) {
        streams.withLockedValue { fds in
            if fds.input >= 0 { close(fds.input); fds.input = -1 }
            if closingOutput, fds.output >= 0 { close(fds.output); fds.output = -1 }
        }
    }

    /// How the process ended, waiting up to `waiting` for it to exit (nil status: still running).
    func exitDescription(waiting: Duration) -> String {
        let deadline = ContinuousClock.now + waiting
        while true {
            if let status = reap(blocking: false) { return Self.describe(status) }
            if ContinuousClock.now >= deadline { return "still running" }
            Thread.sleep(forTimeInterval: 0.01)
        }
    }

    private func reap(blocking: Bool) -> Int32? {
        exited.withLockedValue { known in
            if let known { return known }
            var status: Int32 = 0
            let r = waitpid(pid, &status, blocking ? 0 : WNOHANG)
            if r == pid || r < 0 { Self.live.withLockedValue { _ = $0.remove(pid) } }
            if r == pid { known = status; return status }
            if r < 0 { known = -1; return -1 }   // already reaped elsewhere: nothing more to learn
            return nil
        }
    }

    /// pipe(2) with both ends close-on-exec, so that no other process the agent starts inherits them (Glibc's
    /// module does not export pipe2).
    private static func closeOnExecPipe(_ fds: inout [Int32]) -> Int32 {
        guard pipe(&fds) == 0 else { return -1 }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return 0
    }

    static func describe(_ status: Int32) -> String {
        if status < 0 { return "ended" }
        let signal = status & 0x7f
        if signal == 0 { return "exited with status \((status >> 8) & 0xff)" }
        return "was killed by signal \(signal)"
    }

    private static func readLines(_ fd: Int32, _ body: (String) -> Void) {
        var pending: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, 4096) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            pending.append(contentsOf: chunk[0..<n])
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                body(String(decoding: pending[..<newline], as: UTF8.self))
                pending.removeSubrange(...newline)
            }
            // A line with no end in sight is logged in pieces rather than held without bound.
            if pending.count > 64 * 1024 {
                body(String(decoding: pending, as: UTF8.self))
                pending.removeAll()
            }
        }
        if !pending.isEmpty { body(String(decoding: pending, as: UTF8.self)) }
    }
}
