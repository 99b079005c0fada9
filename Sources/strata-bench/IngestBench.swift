import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import StrataStore
import StrataTransport
import StrataWire

/// Update ingest: a real `strata-coordinator` process (fedbuff, buffer size = agents) and simulated agents in
/// this process that answer every training task at once with a prepared update, over real mutual TLS on
/// loopback. The coordinator's CPU time (all threads, /proc/PID/stat) over a window of updates, divided by
/// the updates acknowledged in it, is compared with the EVP AEAD cost of the bytes in the same process.
///
/// Each update costs the coordinator a whole cycle: decrypting and decoding the update, validating and
/// folding it, a share of the buffer's commit (two model blobs in SQLite every K updates), and sending the
/// agent its next task, which carries the model (the protocol hands out one task per update). The limit is
/// therefore reported twice: decrypting the update alone (the limit) and decrypting the update plus
/// encrypting the task (the cycle's unavoidable crypto). A third limit adds up everything the cycle cannot
/// skip, each part measured alone in this process: that crypto, plain loopback TCP for one frame, one read
/// and one axpy pass over the delta, and SQLite's durable writes (a task record, a K-th of a commit with
/// the model blob).
struct IngestBench: Benchmark {
    static let configuration = CommandConfiguration(commandName: "ingest", abstract: "Coordinator CPU per update over mutual TLS vs AES-GCM decrypt.")

    @OptionGroup var output: BenchOutputOptions
    @OptionGroup var net: NetBenchOptions

    @Option(name: .long, help: "Model parameters (softmax, 10 classes).")
    var parameters: Int = 1_000_000
    @Option(name: .long, help: "Simulated agents sending updates concurrently.")
    var agents: Int = 10
    @Option(name: .long, help: "Updates measured (after the warm-up).")
    var updates: Int = 200
    @Option(name: .long, help: "Updates before the measurement starts.")
    var warmup: Int = 24
    @Option(name: .long, help: "Buffer size K (one commit every K updates); default: the number of agents (the coordinator's default K is 10).")
    var bufferSize: Int?
    @Option(name: .long, help: "Repetitions of the measurement window; the best is reported.")
    var repetitions: Int = 3
    @Option(name: .long, help: "How the simulated agents send their deltas: float32, q8 or top-k:FRACTION (the coordinator decodes what it receives; tasks stay float32).",
            transform: { text in
                guard let encoding = DeltaEncoding(text) else { throw ValidationError("--encoding must be float32, q8 or top-k:FRACTION, not \(text)") }
                return encoding
            })
    var encoding: DeltaEncoding = .float32

    func measure() async throws -> [BenchResult] {
        raiseFileLimit()
        let shape = softmaxShape(parameters: parameters)
        let pki = try BenchPKI.prepare(dir: net.pkiDir, agents: agents)
        let k = bufferSize ?? agents
        let coordinator = try CoordinatorProcess(options: net, pki: pki, parameters: (shape.features, shape.classes), extra: [
            "--mode", "fedbuff", "--buffer-size", "\(k)", "--buffer-timeout", "0", "--evaluate-every", "0", "--max-staleness", "1000000",
        ])
        defer { coordinator.stop() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { group.shutdownGracefully { _ in } }

        let template = UpdateTemplate(parameterCount: shape.count, tensorShapes: shape.tensors, encoding: encoding)
        let stats = SimStats()
        let sims = try await SimAgent.connectAll(agents, policy: .answer, stats: stats, template: template, featureCount: shape.features,
                                                 pki: pki, group: group, coordinator: coordinator)
        defer { sims.forEach { $0.close() } }
        progress("ingest: \(agents) agents connected to coordinator pid \(coordinator.pid), \(shape.count) parameters, \(encoding) update frame \(template.frameBytes) bytes, K = \(k)")

        guard await waitFor("\(warmup) warm-up updates", timeout: 120, { stats.snapshot.receivedAcks >= warmup }) else {
            throw ValidationError("no progress: \(stats.snapshot) \n\(coordinator.logTail())")
        }
        let cipher = stats.snapshot.cipher
        var best: (cpu: Double, loops: Double, wall: Double, count: Int)? = nil
        for rep in 0..<repetitions {
            let n0 = stats.snapshot.receivedAcks
            let c0 = coordinator.cpuSeconds()
            let l0 = coordinator.cpuSeconds(threadsNamed: "NIO-ELT")
            let t0 = Date()
            guard await waitFor("\(updates) updates", timeout: 600, { stats.snapshot.receivedAcks >= n0 + updates }) else {
                throw ValidationError("stalled: \(stats.snapshot)\n\(coordinator.logTail())")
            }
            let n1 = stats.snapshot.receivedAcks
            let cpu = coordinator.cpuSeconds() - c0
            let loops = coordinator.cpuSeconds(threadsNamed: "NIO-ELT") - l0
            let wall = Date().timeIntervalSince(t0)
            let perUpdate = cpu / Double(n1 - n0)
            progress(String(format: "ingest rep %d: %d updates in %.2f s wall, coordinator CPU %.3f s = %.3f ms/update (event loops %.3f ms, the rest %.3f ms)",
                            rep + 1, n1 - n0, wall, cpu, perUpdate * 1e3, loops / Double(n1 - n0) * 1e3, (cpu - loops) / Double(n1 - n0) * 1e3))
            if best == nil || perUpdate < best!.cpu / Double(best!.count) { best = (cpu, loops, wall, n1 - n0) }
        }
        let snapshot = stats.snapshot
        if snapshot.refused > 0 { progress("warning: \(snapshot.refused) updates refused (\(snapshot.lastRefusal))") }

        // Limits are measured with the agents gone, so that nothing else runs in this process.
        sims.forEach { $0.close() }
        try? await Task.sleep(for: .milliseconds(300))
        let limit = AEADLimit.measure(cipherSuite: cipher)
        let tcp = try TCPLoopbackLimit.measure()
        let memory = MemoryPassLimit.measure(parameters: shape.count)
        let storage = try SQLiteCommitLimit.measure(blobBytes: 4 * shape.count, k: k,
                                                    pageSize: CoordinatorStore.pageSize(forModelBytes: 4 * shape.count))
        let (cpu, loops, wall, count) = best!
        let perUpdateMs = cpu / Double(count) * 1e3
        let loopsMs = loops / Double(count) * 1e3
        let updateBytes = Double(template.frameBytes)
        // The task frame carries the model in float32 (a 44-byte header more than a float32 update; negligible).
        let taskBytes = template.compressed == nil ? updateBytes : Double(4 * shape.count + 128)
        // A compressed delta is decoded into dense values before the fold: that pass is part of its floor.
        let decodeMs = template.compressed.map { compressed in
            (0..<5).map { _ in
                let start = ContinuousClock.now
                let tensors = compressed.decoded()
                precondition(tensors.count == shape.tensors.count)
                return (ContinuousClock.now - start).seconds
            }.min()! * 1e3
        } ?? 0
        let decryptMs = updateBytes * limit.decryptSecondsPerByte * 1e3
        let cycleCryptoMs = decryptMs + taskBytes * limit.encryptSecondsPerByte * 1e3
        // The kernel's share: one frame in, one frame out; each costs (both ends together) what moving it over
        // plain loopback TCP costs (see TCPLoopbackLimit).
        let cycleTCPMs = (updateBytes + taskBytes) / 2 * tcp.secondsPerByte * 1e3
        let memoryMs = (memory.readSeconds + memory.axpySeconds) * 1e3
        let storageMs = storage.secondsPerUpdate * 1e3
        let floorMs = cycleCryptoMs + cycleTCPMs + memoryMs + storageMs + decodeMs
        let details: [String: Double] = [
            "updates": Double(count), "agents": Double(agents), "bufferSize": Double(k), "wallSeconds": wall,
            "updatesPerSecond": Double(count) / wall, "updateFrameBytes": updateBytes,
            "decryptGBps": limit.decryptGBps, "encryptGBps": limit.encryptGBps,
            "ingestGBpsPerCoordinatorCore": updateBytes * Double(count) / cpu / 1e9,
            "eventLoopMsPerUpdate": loopsMs, "restMsPerUpdate": perUpdateMs - loopsMs,
            "decryptMsPerUpdate": decryptMs, "cycleCryptoMsPerUpdate": cycleCryptoMs,
            "tcpLoopbackGBps": tcp.gbps, "cycleTCPMsPerUpdate": cycleTCPMs,
            "readPassMs": memory.readSeconds * 1e3, "axpyMs": memory.axpySeconds * 1e3,
            "sqliteMsPerUpdate": storageMs, "sqlitePageSize": Double(storage.pageSize), "cycleFloorMs": floorMs,
            "decodeMsPerUpdate": decodeMs, "taskFrameBytes": taskBytes,
        ]
        progress("plain TCP loopback: \(format(tcp.gbps)) GB/s per CPU second (writer + reader)")
        progress(String(format: "cycle floor per update: AEAD %.3f + TCP %.3f + read pass %.3f + axpy %.3f + SQLite %.3f (page size %d) + decode %.3f = %.3f ms",
                        cycleCryptoMs, cycleTCPMs, memory.readSeconds * 1e3, memory.axpySeconds * 1e3, storageMs, storage.pageSize, decodeMs, floorMs))
        progress("negotiated cipher suite \(cipher); EVP \(limit.evpName): decrypt \(format(limit.decryptGBps)) GB/s, encrypt \(format(limit.encryptGBps)) GB/s (one core, this process)")
        return [
            BenchResult(benchmark: "ingest", figure: "coordinator CPU per \(parameters)-parameter \(encoding) update (update in + task out + fold + commit share)",
                        value: perUpdateMs, unit: "ms", limit: decryptMs, limitUnit: "ms",
                        limitDescription: "EVP \(limit.evpName) decrypt of the update's \(Int(updateBytes)) bytes, \(cipher)",
                        direction: .lowerIsBetter, goal: 2, details: details),
            BenchResult(benchmark: "ingest", figure: "coordinator CPU per update vs the cycle's crypto",
                        value: perUpdateMs, unit: "ms", limit: cycleCryptoMs, limitUnit: "ms",
                        limitDescription: "EVP \(limit.evpName) decrypt of the update + encrypt of the next task",
                        direction: .lowerIsBetter, goal: 2, details: details),
            BenchResult(benchmark: "ingest", figure: "network path per update: event-loop threads (TLS in and out, framing, frame decode/encode)",
                        value: loopsMs, unit: "ms", limit: cycleCryptoMs, limitUnit: "ms",
                        limitDescription: "EVP \(limit.evpName) decrypt of the update + encrypt of the next task",
                        direction: .lowerIsBetter, goal: 2, details: details),
            BenchResult(benchmark: "ingest", figure: "network path per update vs crypto + kernel TCP",
                        value: loopsMs, unit: "ms", limit: cycleCryptoMs + cycleTCPMs, limitUnit: "ms",
                        limitDescription: "EVP AEAD of both frames + plain loopback TCP of one frame (\(format(cycleTCPMs)) ms), same process",
                        direction: .lowerIsBetter, goal: 2, details: details),
            BenchResult(benchmark: "ingest", figure: "coordinator CPU per update vs the cycle's floor",
                        value: perUpdateMs, unit: "ms", limit: floorMs, limitUnit: "ms",
                        limitDescription: "each part alone, this process: AEAD of both frames + loopback TCP of one + a read and an axpy pass over the delta + SQLite's task record and K-th of a commit",
                        direction: .lowerIsBetter, goal: 2, details: details),
            BenchResult(benchmark: "ingest", figure: "coordinator CPU per update vs the 3 ms budget",
                        value: perUpdateMs, unit: "ms", limit: 3, limitUnit: "ms",
                        limitDescription: "issue #6 budget; Flower 1.42 with TLS: 24 ms",
                        direction: .lowerIsBetter, goal: 1, details: details),
        ]
    }
}
