import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import StrataTransport

/// Model broadcast: a real `strata-coordinator` (fedbuff, K = 1, evaluation of every version) with N
/// simulated agents connected that hold their training tasks. One trigger agent answers its task: the
/// coordinator commits a version and sends that model to all N sessions at once (an evaluation round, the
/// coordinator's broadcast path: the tensors are built once per version and every session's frame shares
/// them), plus a new training task to the trigger agent. Measured: the coordinator's CPU time and the wall
/// time from the trigger until every agent holds the whole model; fan-out throughput = N x frame bytes per
/// coordinator CPU second, against the EVP AEAD encrypt throughput of one core in this process.
struct BroadcastBench: Benchmark {
    static let configuration = CommandConfiguration(commandName: "broadcast", abstract: "Fan-out of one model to many sessions vs the encryption limit.")

    @OptionGroup var output: BenchOutputOptions
    @OptionGroup var net: NetBenchOptions

    @Option(name: .long, help: "Model parameters (softmax, 10 classes).")
    var parameters: Int = 1_000_000
    @Option(name: .long, help: "Sessions that receive the model.")
    var sessions: Int = 100
    @Option(name: .long, help: "Broadcasts measured; the best is reported.")
    var repetitions: Int = 3

    func measure() async throws -> [BenchResult] {
        raiseFileLimit()
        let shape = softmaxShape(parameters: parameters)
        let pki = try BenchPKI.prepare(dir: net.pkiDir, agents: sessions)
        let coordinator = try CoordinatorProcess(options: net, pki: pki, parameters: (shape.features, shape.classes), extra: [
            "--mode", "fedbuff", "--buffer-size", "1", "--buffer-timeout", "0", "--evaluate-every", "1", "--evaluation-timeout", "600",
            "--max-staleness", "1000000", "--idle-timeout", "120",
        ])
        defer { coordinator.stop() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: System.coreCount)
        defer { group.shutdownGracefully { _ in } }

        let template = UpdateTemplate(parameterCount: shape.count, tensorShapes: shape.tensors)
        let stats = SimStats()
        let sims = try await SimAgent.connectAll(sessions, policy: .hold, stats: stats, template: template, featureCount: shape.features,
                                                 pki: pki, group: group, coordinator: coordinator)
        defer { sims.forEach { $0.close() } }
        // Every agent receives a training task (the model) as it joins; wait until all hold one.
        guard await waitFor("\(sessions) sessions holding a task", timeout: 300, { sims.allSatisfy(\.hasHeldTask) }) else {
            throw ValidationError("not every agent got a task: \(stats.snapshot)\n\(coordinator.logTail())")
        }
        progress("broadcast: \(sessions) sessions connected to coordinator pid \(coordinator.pid), each holding a task; frame \(template.frameBytes) bytes")
        let trigger = sims[0]
        var best: (cpu: Double, loops: Double, wall: Double)? = nil
        for rep in 0..<repetitions {
            let version = UInt64(rep + 1)
            try? await Task.sleep(for: .milliseconds(300))
            let c0 = coordinator.cpuSeconds()
            let l0 = coordinator.cpuSeconds(threadsNamed: "NIO-ELT")
            let t0 = Date()
            trigger.answerHeldTask()
            guard await waitFor("version \(version) at all \(sessions) sessions", timeout: 300, {
                stats.snapshot.evaluateTasks[version, default: 0] >= sessions && trigger.hasHeldTask
            }) else {
                throw ValidationError("broadcast incomplete: \(stats.snapshot)\n\(coordinator.logTail())")
            }
            let wall = Date().timeIntervalSince(t0)
            let cpu = coordinator.cpuSeconds() - c0
            let loops = coordinator.cpuSeconds(threadsNamed: "NIO-ELT") - l0
            progress(String(format: "broadcast %d: %d x %d bytes in %.3f s wall, coordinator CPU %.3f s (event loops %.3f s)", rep + 1, sessions + 1, template.frameBytes, wall, cpu, loops))
            if best == nil || cpu < best!.cpu { best = (cpu, loops, wall) }
        }
        let cipher = stats.snapshot.cipher
        let peak = coordinator.peakRSS()
        progress("coordinator peak RSS \(peak >> 20) MiB, RSS now \(coordinator.rss() >> 20) MiB")
        sims.forEach { $0.close() }
        try? await Task.sleep(for: .milliseconds(300))
        let limit = AEADLimit.measure(cipherSuite: cipher)
        let tcp = try TCPLoopbackLimit.measure()
        // Sending a byte costs at least its encryption plus the sending end's share of loopback TCP.
        let sendLimitGBps = 1 / (limit.encryptSecondsPerByte + tcp.writerSecondsPerByte) / 1e9
        let (cpu, loops, wall) = best!
        // N evaluation tasks and the trigger's next training task, each one model.
        let bytes = Double(sessions + 1) * Double(template.frameBytes)
        let throughput = bytes / cpu / 1e9
        let details: [String: Double] = [
            "sessions": Double(sessions), "frameBytes": Double(template.frameBytes), "coordinatorCPUSeconds": cpu,
            "wallSeconds": wall, "wallGBps": bytes / wall / 1e9, "encryptGBps": limit.encryptGBps,
            "encryptCPUSecondsForTheBytes": bytes * limit.encryptSecondsPerByte, "eventLoopCPUSeconds": loops,
            "coordinatorPeakRSSBytes": Double(peak), "tcpLoopbackGBps": tcp.gbps, "tcpLoopbackWriterGBps": tcp.writerGBps, "encryptPlusTCPGBps": sendLimitGBps,
        ]
        return [
            BenchResult(benchmark: "broadcast", figure: "fan-out of one \(parameters)-parameter model to \(sessions) sessions, per coordinator CPU second",
                        value: throughput, unit: "GB/s", limit: limit.encryptGBps, limitUnit: "GB/s",
                        limitDescription: "EVP \(limit.evpName) encrypt, one core, \(cipher)",
                        direction: .higherIsBetter, goal: 0.5, details: details),
            BenchResult(benchmark: "broadcast", figure: "network path: fan-out bytes per event-loop CPU second (TLS, framing, socket writes)",
                        value: bytes / loops / 1e9, unit: "GB/s", limit: limit.encryptGBps, limitUnit: "GB/s",
                        limitDescription: "EVP \(limit.evpName) encrypt, one core", direction: .higherIsBetter, goal: 0.5, details: details),
            BenchResult(benchmark: "broadcast", figure: "network path vs encrypt + kernel TCP",
                        value: bytes / loops / 1e9, unit: "GB/s", limit: sendLimitGBps, limitUnit: "GB/s",
                        limitDescription: "EVP \(limit.evpName) encrypt + the writing end of plain loopback TCP (\(format(tcp.writerGBps)) GB/s), one core",
                        direction: .higherIsBetter, goal: 0.5, details: details),
            BenchResult(benchmark: "broadcast", figure: "fan-out wall-clock throughput (2 coordinator threads, agents decrypting on the same 2 cores)",
                        value: bytes / wall / 1e9, unit: "GB/s", limit: limit.encryptGBps, limitUnit: "GB/s",
                        limitDescription: "EVP \(limit.evpName) encrypt, one core", direction: .higherIsBetter, goal: nil, details: details),
        ]
    }
}
