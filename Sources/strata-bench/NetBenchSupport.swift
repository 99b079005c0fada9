import ArgumentParser
import COpenSSL
import CStrataOpenSSLShim
import Foundation
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import NIOTLS
import StrataCore
import StrataTransport
import StrataWire

// Shared machinery of the network benchmarks (ingest, broadcast, scale): a dev PKI with one certificate per
// simulated agent, a real `strata-coordinator` child process measured through /proc, lightweight simulated
// agents that speak the real protocol over real mutual TLS, and the AEAD limit measured with EVP in this process.

// MARK: - Options

struct NetBenchOptions: ParsableArguments {
    @Option(name: .long, help: "Directory of the benchmark PKI (CA and coordinator from Certs/strata-pki.sh, agent certificates issued in-process; reused across runs).")
    var pkiDir: String = "/tmp/strata-bench-pki"

    @Option(name: .long, help: "The strata-coordinator executable (default: next to strata-bench; build it with `swift build -c release --product strata-coordinator`).")
    var coordinator: String?

    @Flag(name: .long, help: "Keep the coordinator's state directory and log.")
    var keepState = false

    @Option(name: .long, parsing: .unconditionalSingleValue,
            help: ArgumentHelp("One more argument for strata-coordinator, after the benchmark's own (repeat it: --coordinator-arg --keep-models --coordinator-arg 0).",
                               valueName: "ARG"))
    var coordinatorArg: [String] = []
}

// MARK: - PKI

/// CA and coordinator certificate from `Certs/strata-pki.sh`; agent certificates `sim-NNNNN` issued in-process
/// (CN = agent id, OU = agent, O = Strata, EKU clientAuth, like the script's), all sharing one EC P-256 key.
/// The coordinator admits one session per client id (a newer session replaces the older one), so every
/// simulated agent needs a certificate of its own; sharing the key changes nothing the coordinator does
/// (it verifies the chain and the CertificateVerify signature of every handshake all the same).
struct BenchPKI {
    let dir: String
    var caFile: String { dir + "/ca.crt" }
    var coordinatorCert: String { dir + "/coordinator.crt" }
    var coordinatorKey: String { dir + "/coordinator.key" }
    var agentKey: String { dir + "/sim/sim-agent.key" }
    func agentCert(_ index: Int) -> String { dir + "/sim/\(Self.agentID(index)).crt" }
    static func agentID(_ index: Int) -> String { String(format: "sim-%05d", index) }

    func agentTLS(_ index: Int) -> TLSConfiguration {
        TLSConfiguration(certificateChainFile: agentCert(index), privateKeyFile: agentKey, trustRootsFile: caFile,
                         handshakeTimeout: .seconds(60))
    }

    static func prepare(dir: String, agents: Int) throws -> BenchPKI {
        let pki = BenchPKI(dir: dir)
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir + "/sim", withIntermediateDirectories: true)
        if !fm.fileExists(atPath: pki.caFile) || !fm.fileExists(atPath: pki.coordinatorCert) {
            let script = try findPKIScript()
            progress("creating the benchmark CA and coordinator certificate with \(script)")
            try runTool(script, ["--dir", dir, "ca"])
            try runTool(script, ["--dir", dir, "coordinator"])
        }
        if !fm.fileExists(atPath: pki.agentKey) {
            try runTool("/usr/bin/env", ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", pki.agentKey])
        }
        let missing = (0..<agents).filter { !fm.fileExists(atPath: pki.agentCert($0)) }
        if !missing.isEmpty {
            progress("issuing \(missing.count) agent certificates in-process")
            try pki.issue(missing)
        }
        return pki
    }

    private static func findPKIScript() throws -> String {
        var candidates: [String] = []
        var dir = URL(fileURLWithPath: FileManager.default.currentDirectoryPath)
        for _ in 0..<6 {
            candidates.append(dir.appendingPathComponent("Certs/strata-pki.sh").path)
            dir.deleteLastPathComponent()
        }
        var exe = URL(fileURLWithPath: executablePath()).deletingLastPathComponent()
        for _ in 0..<5 {
            candidates.append(exe.appendingPathComponent("Certs/strata-pki.sh").path)
            exe.deleteLastPathComponent()
        }
        guard let found = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw ValidationError("cannot find Certs/strata-pki.sh; run from the repository")
        }
        return found
    }

    private func issue(_ indices: [Int]) throws {
        func readPEM<T>(_ path: String, _ reader: (OpaquePointer?) -> T?) throws -> T {
            guard let bio = BIO_new_file(path, "r") else { throw ValidationError("cannot open \(path)") }
            defer { BIO_free(bio) }
            guard let value = reader(bio) else { throw ValidationError("cannot parse \(path)") }
            return value
        }
        let ca = try readPEM(caFile) { PEM_read_bio_X509($0, nil, nil, nil) }
        defer { X509_free(ca) }
        let caKey = try readPEM(dir + "/ca.key") { PEM_read_bio_PrivateKey($0, nil, nil, nil) }
        defer { EVP_PKEY_free(caKey) }
        let key = try readPEM(agentKey) { PEM_read_bio_PrivateKey($0, nil, nil, nil) }
        defer { EVP_PKEY_free(key) }

        for index in indices {
            guard let x = X509_new() else { throw ValidationError("X509_new failed") }
            defer { X509_free(x) }
            X509_set_version(x, 2)
            ASN1_INTEGER_set(X509_get_serialNumber(x), 1_000_000 + index)
            X509_gmtime_adj(X509_getm_notBefore(x), -3600)
            X509_gmtime_adj(X509_getm_notAfter(x), 90 * 86400)
            X509_set_pubkey(x, key)
            let name = X509_get_subject_name(x)
            for (field, value) in [("O", "Strata"), ("OU", "agent"), ("CN", Self.agentID(index))] {
                let bytes = Array(value.utf8)
                _ = bytes.withUnsafeBufferPointer { X509_NAME_add_entry_by_txt(name, field, 0x1001 /* MBSTRING_ASC */, $0.baseAddress, Int32(bytes.count), -1, 0) }
            }
            X509_set_issuer_name(x, X509_get_subject_name(ca))
            var v3 = X509V3_CTX()
            X509V3_set_ctx(&v3, ca, x, nil, nil, 0)
            for (nid, value) in [(NID_basic_constraints, "critical,CA:FALSE"), (NID_key_usage, "critical,digitalSignature"),
                                 (NID_ext_key_usage, "clientAuth"), (NID_subject_key_identifier, "hash")] {
                guard let ext = X509V3_EXT_conf_nid(nil, &v3, nid, value) else { throw ValidationError("extension \(value) failed") }
                X509_add_ext(x, ext, -1)
                X509_EXTENSION_free(ext)
            }
            guard X509_sign(x, caKey, EVP_sha256()) > 0 else { throw ValidationError("X509_sign failed") }
            guard let out = BIO_new_file(agentCert(index), "w") else { throw ValidationError("cannot write \(agentCert(index))") }
            PEM_write_bio_X509(out, x)
            BIO_free(out)
        }
    }
}

func executablePath() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
}

func runTool(_ path: String, _ arguments: [String]) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw ValidationError("\(path) \(arguments.joined(separator: " ")) failed with status \(process.terminationStatus)")
    }
}

/// Raises this process's open-file limit to its hard limit (children such as the coordinator inherit it).
@discardableResult
func raiseFileLimit() -> Int {
    var limit = rlimit()
    getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    if limit.rlim_cur < limit.rlim_max {
        limit.rlim_cur = limit.rlim_max
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
    return Int(limit.rlim_cur)
}

// MARK: - The coordinator process

/// A real `strata-coordinator` in its own process, measured through /proc (CPU time of all its threads, RSS).
final class CoordinatorProcess {
    let process = Process()
    let workDir: String
    let host = "127.0.0.1"
    private(set) var port = 0
    let keep: Bool

    init(options: NetBenchOptions, pki: BenchPKI, parameters: (features: Int, classes: Int), extra: [String]) throws {
        let executable = options.coordinator ?? (URL(fileURLWithPath: executablePath()).deletingLastPathComponent().appendingPathComponent("strata-coordinator").path)
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw ValidationError("no strata-coordinator at \(executable): build it with `swift build -c release --product strata-coordinator` or pass --coordinator")
        }
        workDir = NSTemporaryDirectory() + "strata-bench-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        keep = options.keepState
        try FileManager.default.createDirectory(atPath: workDir, withIntermediateDirectories: true)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = [
            "--cert", pki.coordinatorCert, "--key", pki.coordinatorKey, "--ca", pki.caFile,
            "--state", workDir + "/coordinator.sqlite", "--port", "0", "--ready-file", workDir + "/ready",
            "--features", "\(parameters.features)", "--classes", "\(parameters.classes)", "--log-level", "warning",
            // The simulated agents have no rows to summarise: no statistics phase, no preprocessing (since the
            // standardisation became the default, a coordinator without this refused them as incompatible).
            "--standardize", "off",
        ] + extra + options.coordinatorArg
        process.standardOutput = FileHandle.nullDevice
        _ = FileManager.default.createFile(atPath: workDir + "/coordinator.log", contents: nil)
        process.standardError = FileHandle(forWritingAtPath: workDir + "/coordinator.log")
        try process.run()
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            // First line: "HOST PORT" of the agents' port (admin and metrics lines may follow).
            if let text = try? String(contentsOfFile: workDir + "/ready", encoding: .utf8),
               let first = text.split(separator: "\n").first,
               let port = first.split(separator: " ").last.flatMap({ Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) {
                self.port = port
                return
            }
            guard process.isRunning else { break }
            usleep(20_000)
        }
        let log = (try? String(contentsOfFile: workDir + "/coordinator.log", encoding: .utf8)) ?? ""
        process.terminate()
        throw ValidationError("the coordinator did not start:\n\(log.suffix(2000))")
    }

    var pid: Int32 { process.processIdentifier }

    /// User + system CPU seconds of every thread of the coordinator so far.
    func cpuSeconds() -> Double {
        Self.statCPU("/proc/\(pid)/stat")
    }

    /// CPU seconds of the coordinator's threads whose name starts with `prefix`: "NIO-ELT" are the event
    /// loops (sockets, TLS, framing, frame decoding and encoding); the rest is the coordinator actor, the
    /// session tasks and the SQLite store (Swift concurrency and Dispatch threads).
    func cpuSeconds(threadsNamed prefix: String) -> Double {
        guard let tids = try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task") else { return .nan }
        var total = 0.0
        for tid in tids {
            guard let name = try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/comm", encoding: .utf8), name.hasPrefix(prefix) else { continue }
            let seconds = Self.statCPU("/proc/\(pid)/task/\(tid)/stat")
            if seconds.isFinite { total += seconds }
        }
        return total
    }

    private static func statCPU(_ path: String) -> Double {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return .nan }
        let fields = text[text.index(after: close)...].split(separator: " ")
        // After the command: state(0) ppid(1) ... utime(11) stime(12).
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else { return .nan }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    func rss() -> Int { residentBytes(pid: pid) ?? 0 }

    /// The coordinator's peak RSS so far (VmHWM), in bytes.
    func peakRSS() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else { return 0 }
        return kib * 1024
    }

    func logTail() -> String {
        String(((try? String(contentsOfFile: workDir + "/coordinator.log", encoding: .utf8)) ?? "").suffix(1500))
    }

    func stop() {
        if process.isRunning {
            kill(pid, SIGTERM)
            let deadline = Date().addingTimeInterval(15)
            while process.isRunning && Date() < deadline { usleep(50_000) }
            if process.isRunning { kill(pid, SIGKILL) }
            process.waitUntilExit()
        }
        if !keep {
            try? FileManager.default.removeItem(atPath: workDir)
        } else {
            progress("coordinator state and log kept in \(workDir)")
        }
    }
}

// MARK: - Simulated agents

/// What a simulated agent does with a training task.
enum SimTaskPolicy: Sendable {
    /// Answer at once with the prepared update (ingest).
    case answer
    /// Keep it until the benchmark says `answerHeldTask()` (broadcast, scale).
    case hold
}

/// A prepared update: the frame's body (everything after task id and base version, the delta tensors
/// included) is built once and shared by every update any agent sends; only a 24-byte prefix is per update.
struct UpdateTemplate: Sendable {
    let header: ByteBuffer  // the 8-byte frame header
    let body: ByteBuffer
    var frameBytes: Int { header.readableBytes + 16 + body.readableBytes }

    /// The delta as the coordinator receives it, compressed when `encoding` is not float32.
    let compressed: CompressedTensors?

    init(parameterCount: Int, tensorShapes: [(String, [Int])], scale: Float = 1e-3, seed: UInt64 = 7, encoding: DeltaEncoding = .float32) {
        var generator = seed
        var offset = 0
        var tensors: [WireTensor] = []
        for (name, shape) in tensorShapes {
            let count = shape.reduce(1, *)
            let values = (0..<count).map { _ -> Float in
                generator = generator &* 6364136223846793005 &+ 1442695040888963407
                return (Float(generator >> 40) / Float(1 << 24) - 0.5) * 2 * scale
            }
            tensors.append(WireTensor(name: name, shape: shape, values: values))
            offset += count
        }
        precondition(offset == parameterCount)
        compressed = CompressedTensors.encode(tensors.flatMap { $0.floats() }, shapes: tensorShapes.map { (name: $0.0, shape: $0.1) }, as: encoding)
        let update = Update(taskID: 0, baseVersion: 0, sampleCount: 100, trainLoss: 0.5, evalSampleCount: 20, evalLoss: 0.6,
                            evalAccuracy: 0.5, trainMillis: 1, delta: compressed == nil ? tensors : [], compressedDelta: compressed)
        var frame = WireCodec.encode(.update(update))
        header = frame.readSlice(length: FrameHeader.size)!
        frame.moveReaderIndex(forwardBy: 16)
        body = frame.slice()
    }

    /// The update's frame for a task, or its part frames when it is larger than `frameLimit` (> 0); the body is shared.
    func frames(taskID: UInt64, baseVersion: UInt64, frameLimit: Int, allocator: ByteBufferAllocator) -> [ByteBuffer] {
        let pieces = [prefix(taskID: taskID, baseVersion: baseVersion, allocator: allocator), body]
        return frameLimit > 0 ? WireCodec.splitIntoParts(pieces, maxPayloadBytes: frameLimit, allocator: allocator) : pieces
    }

    func prefix(taskID: UInt64, baseVersion: UInt64, allocator: ByteBufferAllocator) -> ByteBuffer {
        var buffer = allocator.buffer(capacity: 24)
        buffer.writeImmutableBuffer(header)
        buffer.writeInteger(taskID, endianness: .little)
        buffer.writeInteger(baseVersion, endianness: .little)
        return buffer
    }
}

/// Counters of all simulated agents of a run; thread-safe.
final class SimStats: Sendable {
    struct Counts: Sendable {
        var welcomed = 0
        var trainTasks = 0
        var evaluateTasks: [UInt64: Int] = [:]
        var receivedAcks = 0
        var committedAcks = 0
        var refused = 0
        var lastRefusal = ""
        var errors = 0
        var lastError = ""
        var closed = 0
        var goodbyes = 0
        var cipher = ""
        var heartbeatRepliesMissing = 0
    }
    let counts = NIOLockedValueBox(Counts())
    /// Heartbeat round trips in seconds, while `recording`.
    let rtts = NIOLockedValueBox<[Double]>([])
    let recording = NIOLockedValueBox(false)

    func update(_ body: (inout Counts) -> Void) { counts.withLockedValue { body(&$0) } }
    var snapshot: Counts { counts.withLockedValue { $0 } }

    func startRecording() {
        rtts.withLockedValue { $0.removeAll(keepingCapacity: true) }
        recording.withLockedValue { $0 = true }
    }
    func stopRecording() -> [Double] {
        recording.withLockedValue { $0 = false }
        return rtts.withLockedValue { $0 }
    }
}

/// One simulated agent; the benchmark's handle on it.
final class SimAgent: Sendable {
    let index: Int
    let stats: SimStats
    let policy: SimTaskPolicy
    let template: UpdateTemplate?
    let featureCount: Int
    let channel = NIOLockedValueBox<(any Channel)?>(nil)
    let heldTask = NIOLockedValueBox<(taskID: UInt64, baseVersion: UInt64)?>(nil)
    /// The coordinator's frame limit once its welcome offered messages in parts (0: never split).
    let partsFrameLimit = NIOLockedValueBox(0)

    init(index: Int, stats: SimStats, policy: SimTaskPolicy, template: UpdateTemplate?, featureCount: Int) {
        self.index = index
        self.stats = stats
        self.policy = policy
        self.template = template
        self.featureCount = featureCount
    }

    var id: String { BenchPKI.agentID(index) }

    func connect(group: any EventLoopGroup, tls: TLSContext, host: String, port: Int) async throws {
        let channel = try await ClientBootstrap(group: group)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(30))
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture { () throws -> any Channel in
                    let tlsHandler = try OpenSSLHandler(context: tls, serverHostname: "127.0.0.1")
                    try channel.pipeline.syncOperations.addHandler(tlsHandler)
                    try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(MessageDecoder(
                        maxPayloadBytes: 256 * 1024 * 1024, offerFrameBuffer: PlaintextReadTarget.offer, messageLimit: MessageSizeLimit(Int(UInt32.max)))))
                    try channel.pipeline.syncOperations.addHandler(SimAgentHandler(agent: self, tls: tlsHandler))
                    return channel
                }
            }
        self.channel.withLockedValue { $0 = channel }
    }

    /// Sends the update for the training task it holds, if any.
    func answerHeldTask() {
        guard let task = heldTask.withLockedValue({ value -> (taskID: UInt64, baseVersion: UInt64)? in defer { value = nil }; return value }),
              let channel = channel.withLockedValue({ $0 }) else { return }
        let template = self.template!
        let limit = partsFrameLimit.withLockedValue { $0 }
        channel.eventLoop.execute {
            for piece in template.frames(taskID: task.taskID, baseVersion: task.baseVersion, frameLimit: limit, allocator: channel.allocator) {
                channel.write(piece, promise: nil)
            }
            channel.flush()
        }
    }

    var hasHeldTask: Bool { heldTask.withLockedValue { $0 != nil } }

    /// Connects agents 0..<count one after another (each with its own certificate from `pki`).
    static func connectAll(_ count: Int, policy: SimTaskPolicy, stats: SimStats, template: UpdateTemplate, featureCount: Int,
                           pki: BenchPKI, group: any EventLoopGroup, coordinator: CoordinatorProcess) async throws -> [SimAgent] {
        var sims: [SimAgent] = []
        for index in 0..<count {
            let tls = try TLSContext(configuration: pki.agentTLS(index), mode: .client)
            let sim = SimAgent(index: index, stats: stats, policy: policy, template: template, featureCount: featureCount)
            try await sim.connect(group: group, tls: tls, host: coordinator.host, port: coordinator.port)
            sims.append(sim)
        }
        return sims
    }

    func close() {
        channel.withLockedValue { $0 }?.close(promise: nil)
    }
}

/// The agent's protocol, on the event loop: hello, heartbeats (recording round trips), tasks per policy.
final class SimAgentHandler: ChannelInboundHandler {
    typealias InboundIn = Message
    typealias OutboundOut = ByteBuffer

    private let agent: SimAgent
    private let tls: OpenSSLHandler
    private var heartbeat: Scheduled<Void>?
    private var sequence: UInt64 = 0
    private var outstandingBeats = 0

    init(agent: SimAgent, tls: OpenSSLHandler) {
        self.agent = agent
        self.tls = tls
    }

    private func send(_ message: Message, context: ChannelHandlerContext) {
        var buffer = context.channel.allocator.buffer(capacity: 64)
        WireCodec.encode(message, into: &buffer)
        context.writeAndFlush(wrapOutboundOut(buffer), promise: nil)
    }

    private func scheduleBeat(context: ChannelHandlerContext, in delay: TimeAmount, interval: TimeAmount) {
        heartbeat = context.eventLoop.assumeIsolated().scheduleTask(in: delay) { [self] in
            guard context.channel.isActive else { return }
            if outstandingBeats > 0 { agent.stats.update { $0.heartbeatRepliesMissing += 1 } }
            sequence += 1
            outstandingBeats += 1
            send(.heartbeat(Heartbeat(sequence: sequence, timestampNanos: DispatchTime.now().uptimeNanoseconds, isReply: false)), context: context)
            scheduleBeat(context: context, in: interval, interval: interval)
        }
    }

    func channelActive(context: ChannelHandlerContext) {
        // Buffered by the TLS handler until the handshake completes.
        send(.hello(Hello(agentVersion: "strata-bench", featureCount: UInt32(agent.featureCount), trainSampleCount: 100,
                          evalSampleCount: 20, pendingUpdateCount: 0, capabilities: [.messageParts])), context: context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        heartbeat?.cancel()
        agent.stats.update { $0.closed += 1 }
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        agent.stats.update { $0.errors += 1; $0.lastError = "\(agent.id): \(error)" }
        context.close(promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let message = unwrapInboundIn(data)
        switch message {
        case .welcome(let welcome):
            if welcome.maxMessageBytes != nil { agent.partsFrameLimit.withLockedValue { $0 = Int(welcome.maxFrameBytes) } }
            let cipher = tls.negotiatedCipher ?? "?"
            agent.stats.update { $0.welcomed += 1; $0.cipher = cipher }
            let interval = TimeAmount.milliseconds(Int64(max(100, welcome.heartbeatIntervalMillis)))
            // Spread the agents' heartbeats over the interval.
            scheduleBeat(context: context, in: .nanoseconds(Int64.random(in: 0..<interval.nanoseconds)), interval: interval)
        case .heartbeat(let beat):
            if beat.isReply {
                outstandingBeats = max(0, outstandingBeats - 1)
                let rtt = Double(DispatchTime.now().uptimeNanoseconds &- beat.timestampNanos) / 1e9
                let stats = agent.stats
                if stats.recording.withLockedValue({ $0 }) { stats.rtts.withLockedValue { $0.append(rtt) } }
            } else {
                send(.heartbeat(Heartbeat(sequence: beat.sequence, timestampNanos: beat.timestampNanos, isReply: true)), context: context)
            }
        case .task(let task):
            switch task.kind {
            case .evaluate:
                agent.stats.update { $0.evaluateTasks[task.baseVersion, default: 0] += 1 }
            case .train:
                agent.stats.update { $0.trainTasks += 1 }
                switch agent.policy {
                case .answer:
                    let template = agent.template!
                    let limit = agent.partsFrameLimit.withLockedValue { $0 }
                    for piece in template.frames(taskID: task.taskID, baseVersion: task.baseVersion, frameLimit: limit, allocator: context.channel.allocator) {
                        context.write(wrapOutboundOut(piece), promise: nil)
                    }
                    context.flush()
                case .hold:
                    agent.heldTask.withLockedValue { $0 = (task.taskID, task.baseVersion) }
                }
            case .statistics:
                break  // the bench's coordinator runs without preprocessing (--standardize off)
            }
        case .ack(let ack):
            agent.stats.update {
                switch ack.status {
                case .received: $0.receivedAcks += 1
                case .committed: $0.committedAcks += 1
                case .refused: $0.refused += 1; $0.lastRefusal = "\(ack.code): \(ack.reason)"
                }
            }
        case .goodbye:
            agent.stats.update { $0.goodbyes += 1 }
            context.close(promise: nil)
        case .error(let error):
            agent.stats.update { $0.errors += 1; $0.lastError = "\(agent.id): coordinator error \(error.code): \(error.message)" }
            context.close(promise: nil)
        case .hello, .update, .part:
            context.close(promise: nil)
        }
    }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes; returns whether it held.
@discardableResult
func waitFor(_ what: String, timeout: Double, _ condition: () -> Bool) async -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while !condition() {
        if Date() > deadline {
            progress("timed out after \(timeout) s waiting for \(what)")
            return false
        }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return true
}

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let rank = min(sorted.count - 1, max(0, Int((p * Double(sorted.count)).rounded(.up)) - 1))
    return sorted[rank]
}

/// Softmax model shape for about `parameters` parameters with 10 classes: features x 10 weights + 10 biases.
func softmaxShape(parameters: Int, classes: Int = 10) -> (features: Int, classes: Int, count: Int, tensors: [(String, [Int])]) {
    let features = max(1, parameters / classes - 1)
    let spec = ModelSpec(kind: .softmaxRegression, featureCount: features, outputCount: classes)
    return (features, classes, spec.parameterCount, spec.tensorShapes.map { ($0.name, $0.shape) })
}

// MARK: - The AEAD limit

/// CPU seconds (this thread) the TLS record AEAD of `bytes` plaintext bytes costs with EVP, in 16 KiB records
/// with a 5-byte AAD like TLS 1.3 records; the best of a few passes over a 8 MiB working set.
struct AEADLimit {
    let cipherSuite: String
    let encryptSecondsPerByte: Double
    let decryptSecondsPerByte: Double

    var decryptGBps: Double { 1 / decryptSecondsPerByte / 1e9 }
    var encryptGBps: Double { 1 / encryptSecondsPerByte / 1e9 }
    var evpName: String {
        switch cipherSuite {
        case "TLS_AES_128_GCM_SHA256": "AES-128-GCM"
        case "TLS_CHACHA20_POLY1305_SHA256": "ChaCha20-Poly1305"
        default: "AES-256-GCM"
        }
    }

    static func measure(cipherSuite: String) -> AEADLimit {
        let cipher: OpaquePointer
        let keyLength: Int
        switch cipherSuite {
        case "TLS_AES_128_GCM_SHA256": cipher = EVP_aes_128_gcm(); keyLength = 16
        case "TLS_CHACHA20_POLY1305_SHA256": cipher = EVP_chacha20_poly1305(); keyLength = 32
        default: cipher = EVP_aes_256_gcm(); keyLength = 32
        }
        let record = 16 * 1024
        let records = 512
        let key = [UInt8](repeating: 0x42, count: keyLength)
        let aad: [UInt8] = [0x17, 0x03, 0x03, 0x40, 0x11]
        var plain = [UInt8](repeating: 0, count: record * records)
        for i in plain.indices { plain[i] = UInt8(truncatingIfNeeded: i &* 31 &+ 7) }
        var sealed = [UInt8](repeating: 0, count: record * records)
        var tags = [UInt8](repeating: 0, count: 16 * records)
        var opened = [UInt8](repeating: 0, count: record * records)
        let ctx = EVP_CIPHER_CTX_new()!
        defer { EVP_CIPHER_CTX_free(ctx) }

        func iv(_ n: Int) -> [UInt8] {
            var iv = [UInt8](repeating: 0x24, count: 12)
            withUnsafeBytes(of: UInt64(n).bigEndian) { for k in 0..<8 { iv[4 + k] = $0[k] } }
            return iv
        }
        func encryptAll() {
            var outLength: Int32 = 0
            EVP_EncryptInit_ex(ctx, cipher, nil, key, nil)
            for r in 0..<records {
                EVP_EncryptInit_ex(ctx, nil, nil, nil, iv(r))
                EVP_EncryptUpdate(ctx, nil, &outLength, aad, Int32(aad.count))
                plain.withUnsafeBufferPointer { p in
                    sealed.withUnsafeMutableBufferPointer { s in
                        _ = EVP_EncryptUpdate(ctx, s.baseAddress! + r * record, &outLength, p.baseAddress! + r * record, Int32(record))
                    }
                }
                EVP_EncryptFinal_ex(ctx, nil, &outLength)
                tags.withUnsafeMutableBufferPointer { t in _ = EVP_CIPHER_CTX_ctrl(ctx, 0x10 /* GET_TAG */, 16, t.baseAddress! + r * 16) }
            }
        }
        func decryptAll() -> Bool {
            var outLength: Int32 = 0
            var ok = true
            EVP_DecryptInit_ex(ctx, cipher, nil, key, nil)
            for r in 0..<records {
                EVP_DecryptInit_ex(ctx, nil, nil, nil, iv(r))
                EVP_DecryptUpdate(ctx, nil, &outLength, aad, Int32(aad.count))
                sealed.withUnsafeBufferPointer { s in
                    opened.withUnsafeMutableBufferPointer { o in
                        _ = EVP_DecryptUpdate(ctx, o.baseAddress! + r * record, &outLength, s.baseAddress! + r * record, Int32(record))
                    }
                }
                tags.withUnsafeMutableBufferPointer { t in _ = EVP_CIPHER_CTX_ctrl(ctx, 0x11 /* SET_TAG */, 16, t.baseAddress! + r * 16) }
                var finalLength: Int32 = 0
                var scratch = [UInt8](repeating: 0, count: 32)
                if EVP_DecryptFinal_ex(ctx, &scratch, &finalLength) != 1 { ok = false }
            }
            return ok
        }
        let bytes = Double(record * records)
        var bestEncrypt = Double.infinity
        var bestDecrypt = Double.infinity
        for _ in 0..<5 {
            let e0 = threadCPUSeconds()
            encryptAll()
            bestEncrypt = min(bestEncrypt, threadCPUSeconds() - e0)
            let d0 = threadCPUSeconds()
            let ok = decryptAll()
            bestDecrypt = min(bestDecrypt, threadCPUSeconds() - d0)
            precondition(ok, "AEAD self-check failed")
        }
        return AEADLimit(cipherSuite: cipherSuite, encryptSecondsPerByte: bestEncrypt / bytes, decryptSecondsPerByte: bestDecrypt / bytes)
    }
}

func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

// MARK: - The TCP loopback limit

/// CPU seconds (both ends, in this process: a writer and a reader thread, each timing its own CPU) to move one
/// byte through a plain loopback TCP connection with blocking sockets, 1 MiB writes and reads. On loopback
/// the receiving side's protocol work runs in the sender's softirq context, so only the sum of both ends is
/// meaningful: it is what one frame costs the kernel, whichever side pays which part.
struct TCPLoopbackLimit {
    /// Both ends: what one byte costs the kernel in all.
    let secondsPerByte: Double
    /// The writing end alone (its write calls and, on loopback, the receive processing run in its softirq).
    let writerSecondsPerByte: Double
    var gbps: Double { 1 / secondsPerByte / 1e9 }
    var writerGBps: Double { 1 / writerSecondsPerByte / 1e9 }

    static func measure(bytes total: Int = 512 << 20) throws -> TCPLoopbackLimit {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard listener >= 0 else { throw ValidationError("socket failed") }
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) } }
        guard bound == 0, listen(listener, 1) == 0 else { throw ValidationError("bind/listen failed") }
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) } }
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(client) }
        let connected = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, length) } }
        guard connected == 0 else { throw ValidationError("connect failed") }
        let server = accept(listener, nil, nil)
        guard server >= 0 else { throw ValidationError("accept failed") }
        defer { close(server) }

        let readerCPU = NIOLockedValueBox(0.0)
        let reader = Thread {
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 64)
            defer { buffer.deallocate() }
            let start = threadCPUSeconds()
            var received = 0
            while received < total {
                let n = read(server, buffer, 1 << 20)
                if n <= 0 { break }
                received += n
            }
            readerCPU.withLockedValue { $0 = threadCPUSeconds() - start }
        }
        reader.start()
        let chunk = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 64)
        defer { chunk.deallocate() }
        memset(chunk, 0x5A, 1 << 20)
        let start = threadCPUSeconds()
        var sent = 0
        while sent < total {
            let n = write(client, chunk, min(1 << 20, total - sent))
            if n <= 0 { throw ValidationError("loopback write failed") }
            sent += n
        }
        let writerCPU = threadCPUSeconds() - start
        while !reader.isFinished { usleep(1000) }
        let cpu = writerCPU + readerCPU.withLockedValue { $0 }
        return TCPLoopbackLimit(secondsPerByte: cpu / Double(total), writerSecondsPerByte: writerCPU / Double(total))
    }
}
