import Foundation
import NIOCore
import NIOPosix
import StrataTransport
import StrataWire
import Testing

/// Locates the built programs next to the test binary (or in STRATA_BIN_DIR).
enum Binaries {
    static let directory: String = {
        if let dir = ProcessInfo.processInfo.environment["STRATA_BIN_DIR"] { return dir }
        var candidates = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()]
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        candidates.append(root.appendingPathComponent(".build/debug"))
        for candidate in candidates {
            var dir = candidate
            // The test bundle may be a directory (…/X.xctest/Contents/MacOS) on some platforms.
            for _ in 0..<4 {
                if FileManager.default.isExecutableFile(atPath: dir.appendingPathComponent("strata-coordinator").path) { return dir.path }
                dir = dir.deletingLastPathComponent()
            }
        }
        return root.appendingPathComponent(".build/debug").path
    }()
    static func path(_ name: String) -> String { directory + "/" + name }
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
}

/// A temporary folder and every process started in it; everything is stopped and removed on deinit,
/// also when a test fails half-way.
final class Sandbox: @unchecked Sendable {
    let path: String
    private var processes: [Process] = []
    private let lock = NSLock()

    init(_ name: String) {
        path = NSTemporaryDirectory() + "strata-it-\(name)-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit {
        for process in processes where process.isRunning {
            process.terminate()
        }
        for process in processes { process.waitUntilExit() }
        if ProcessInfo.processInfo.environment["STRATA_KEEP_TEST_DIRS"] == nil {
            try? FileManager.default.removeItem(atPath: path)
        }
    }

    func file(_ name: String) -> String { path + "/" + name }

    /// `environment`: variables added to (or replacing) the test process's own.
    @discardableResult
    func start(_ executable: String, _ arguments: [String], log: String, environment: [String: String] = [:]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, given in given }
        }
        process.currentDirectoryURL = URL(fileURLWithPath: path)
        _ = FileManager.default.createFile(atPath: file(log), contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: file(log)))
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
        lock.lock(); processes.append(process); lock.unlock()
        return process
    }

    /// Runs to completion (bounded by `timeout`), returning exit status and combined output.
    func run(_ executable: String, _ arguments: [String], timeout: Double = 120, environment: [String: String] = [:]) throws -> (status: Int32, output: String) {
        let log = "run-\(UUID().uuidString.prefix(6)).log"
        let process = try start(executable, arguments, log: log, environment: environment)
        try waitForExit(process, timeout: timeout)
        return (process.terminationStatus, (try? String(contentsOfFile: file(log), encoding: .utf8)) ?? "")
    }

    /// Like `run`, with stdout and stderr kept apart (for programs whose stdout is parsed, e.g. JSON).
    func runSeparately(_ executable: String, _ arguments: [String], timeout: Double = 120) throws -> (status: Int32, stdout: String, stderr: String) {
        let name = "run-\(UUID().uuidString.prefix(6))"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: path)
        for stream in ["out", "err"] { _ = FileManager.default.createFile(atPath: file("\(name).\(stream)"), contents: nil) }
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: file("\(name).out")))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: file("\(name).err")))
        try process.run()
        lock.lock(); processes.append(process); lock.unlock()
        try waitForExit(process, timeout: timeout)
        return (process.terminationStatus, read("\(name).out"), read("\(name).err"))
    }

    func read(_ name: String) -> String { (try? String(contentsOfFile: file(name), encoding: .utf8)) ?? "" }

    func waitForExit(_ process: Process, timeout: Double) throws {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if Date() > deadline {
                process.terminate()
                throw HarnessError.timeout("\(process.executableURL?.lastPathComponent ?? "process") still running after \(timeout) s")
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    func waitForFile(_ name: String, timeout: Double, while process: Process) throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let text = read(name)
            if !text.isEmpty { return text }
            guard process.isRunning else { throw HarnessError.exited("process exited before writing \(name)") }
            Thread.sleep(forTimeInterval: 0.05)
        }
        throw HarnessError.timeout("\(name) not written within \(timeout) s")
    }

    // MARK: Federation pieces

    func makePKI(agents: Int) throws {
        let result = try run("/bin/bash", [Binaries.repoRoot + "/Certs/strata-pki.sh", "--dir", file("pki"), "dev", "--agents", "\(agents)"])
        guard result.status == 0 else { throw HarnessError.exited("strata-pki.sh failed: \(result.output)") }
    }

    func makeData(clients: Int, seed: Int = 1) throws -> Double {
        let result = try run(Binaries.path("strata-datagen"), ["--out", file("data"), "--clients", "\(clients)", "--seed", "\(seed)"])
        guard result.status == 0 else { throw HarnessError.exited("strata-datagen failed: \(result.output)") }
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file("data/manifest.json")))) as! [String: Any]
        return manifest["referenceAccuracy"] as! Double
    }

    /// Starts the coordinator on a free port and returns it with that port. Without a `--standardize` in
    /// `extra` it runs with `--standardize off`: tests that speak the protocol by hand (RawClient) do not
    /// answer the statistics phase, which tests of real agents switch on (`--standardize on`).
    func startCoordinator(_ extra: [String]) throws -> (Process, Int) {
        let standardize = extra.contains("--standardize") ? [] : ["--standardize", "off"]
        let process = try start(Binaries.path("strata-coordinator"), [
            "--cert", file("pki/coordinator.crt"), "--key", file("pki/coordinator.key"), "--ca", file("pki/ca.crt"),
            "--state", file("coordinator.sqlite"), "--port", "0", "--ready-file", file("coordinator.addr"),
            "--features", "60", "--classes", "10", "--summary-file", file("summary.json"),
            "--admin-port", "0", "--metrics-port", "0",
        ] + standardize + extra, log: "coordinator.log")
        let address = try waitForFile("coordinator.addr", timeout: 30, while: process)
        guard let port = Int(address.split(separator: "\n").first?.split(separator: " ").last ?? "") else {
            throw HarnessError.exited("bad ready file: \(address)")
        }
        return (process, port)
    }

    /// The admin and metrics ports from the ready file ("admin HOST PORT", "metrics HOST PORT" lines).
    func endpointPort(_ name: String) throws -> Int {
        for line in read("coordinator.addr").split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 3, fields[0] == name, let port = Int(fields[2]) { return port }
        }
        throw HarnessError.exited("no \(name) endpoint in the ready file: \(read("coordinator.addr"))")
    }

    /// Agents agent-01 … agent-NN against the coordinator on `port`, agent k reading `database(k)`, each logging to
    /// `agent-NN.log`.
    func startAgents(_ count: Int, port: Int, database: (Int) -> String) throws -> [Process] {
        try (1...count).map { k in
            let id = String(format: "agent-%02d", k)
            return try start(Binaries.path("strata-agent"), agentArguments(port: port, id: id, database: database(k)), log: "\(id).log")
        }
    }

    func agentArguments(port: Int, id: String, cert: String? = nil, key: String? = nil, database: String, extra: [String] = []) -> [String] {
        ["--coordinator", "127.0.0.1:\(port)", "--server-name", "localhost",
         "--cert", cert ?? file("pki/agents/\(id).crt"), "--key", key ?? file("pki/agents/\(id).key"), "--ca", file("pki/ca.crt"),
         "--database", database, "--state", file("\(id).state.sqlite"),
         // One federation per test: the agent exits when it ends (the default waits for the next one).
         "--after-federation", "exit"] + extra
    }
}

enum HarnessError: Error, CustomStringConvertible {
    case timeout(String)
    case exited(String)
    var description: String {
        switch self {
        case .timeout(let s), .exited(let s): s
        }
    }
}

/// A hand-driven protocol client: real TLS, arbitrary bytes. For the tests that misbehave on purpose.
final class RawClient: Sendable {
    let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>
    let group: MultiThreadedEventLoopGroup

    static func connect(port: Int, cert: String, key: String, ca: String) async throws -> RawClient {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let context = try TLSContext(configuration: TLSConfiguration(certificateChainFile: cert, privateKeyFile: key, trustRootsFile: ca), mode: .client)
        do {
            let (channel, identity) = try await ClientBootstrap(group: group).connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let identity = try SecureChannel.addTLSHandlers(to: channel, context: context, serverHostname: "localhost")
                    return (try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel), identity)
                }
            }
            _ = try await identity.get()
            return RawClient(channel: channel, group: group)
        } catch {
            try? await group.shutdownGracefully()
            throw error
        }
    }

    private init(channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>, group: MultiThreadedEventLoopGroup) {
        self.channel = channel
        self.group = group
    }

    /// Sends `bytes`, then collects decoded messages until `until` returns true, the peer closes, or the timeout.
    func exchange(send frames: [ByteBuffer], timeout: Duration = .seconds(20), until: @escaping @Sendable ([Message]) -> Bool) async throws -> [Message] {
        try await channel.executeThenClose { inbound, outbound in
            for frame in frames { try await outbound.write(frame) }
            return try await withThrowingTaskGroup(of: [Message].self) { group in
                group.addTask {
                    var buffer = ByteBuffer()
                    var messages: [Message] = []
                    do {
                        for try await chunk in inbound {
                            buffer.writeImmutableBuffer(chunk)
                            while let message = try WireCodec.decodeFrame(from: &buffer, maxPayloadBytes: 64 << 20) {
                                messages.append(message)
                                if until(messages) { return messages }
                            }
                        }
                    } catch {}
                    return messages
                }
                group.addTask {
                    try await Task.sleep(for: timeout)
                    throw HarnessError.timeout("no expected reply within \(timeout)")
                }
                defer { group.cancelAll() }
                return try await group.next()!
            }
        }
    }

    func shutdown() async {
        try? await group.shutdownGracefully()
    }
}

/// Polls `condition` every 0.2 s until it holds; throws `HarnessError.timeout` naming `what` after `timeout`
/// seconds (checking once more after the deadline, in case the poller itself was starved).
func eventually(_ what: String, timeout: Double, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return }
        Thread.sleep(forTimeInterval: 0.2)
    }
    if try condition() { return }
    throw HarnessError.timeout("waited \(Int(timeout)) s for: \(what)")
}

/// The same for async tests: suspends instead of blocking a thread of the cooperative pool.
func eventually(_ what: String, timeout: Double, _ condition: () throws -> Bool) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return }
        try await Task.sleep(for: .milliseconds(200))
    }
    if try condition() { return }
    throw HarnessError.timeout("waited \(Int(timeout)) s for: \(what)")
}
