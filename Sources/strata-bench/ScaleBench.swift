import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import StrataTransport

/// Scale: a real `strata-coordinator` process and thousands of lightweight simulated agents in this process,
/// each with its own certificate, real mutual TLS, real heartbeats and small updates. Phases:
///   1. ramp: connect in batches (full mTLS handshakes), each agent receives and holds a training task;
///   2. idle: heartbeats only; coordinator CPU, RSS per session, heartbeat round trips;
///   3. active: every agent answers its task once at a random moment of the phase (small updates, commits
///      every K updates, new tasks), heartbeats continue; round trips under that load.
/// Heartbeat round trips are measured by the agents (send to reply, through both TLS stacks and the
/// coordinator's session task), so they include this load generator's own scheduling on the shared cores.
struct ScaleBench: Benchmark {
    static let configuration = CommandConfiguration(commandName: "scale", abstract: "Thousands of concurrent mutual-TLS sessions: heartbeat latency, memory, idle CPU.")

    @OptionGroup var output: BenchOutputOptions
    @OptionGroup var net: NetBenchOptions

    @Option(name: .long, help: "Concurrent sessions.")
    var sessions: Int = 5000
    @Option(name: .long, help: "Connections started at once during the ramp.")
    var batch: Int = 200
    @Option(name: .long, help: "Model parameters (softmax, 10 classes) of the small updates.")
    var parameters: Int = 610
    @Option(name: .long, help: "Heartbeat interval announced by the coordinator, seconds.")
    var heartbeatInterval: Double = 2
    @Option(name: .long, help: "Seconds of each measured phase (idle, active).")
    var phaseSeconds: Double = 30
    @Option(name: .long, help: "Buffer size K of the coordinator (fedbuff).")
    var bufferSize: Int = 10
    @Option(name: .long, help: "Event-loop threads of the load generator.")
    var threads: Int = System.coreCount

    func measure() async throws -> [BenchResult] {
        let fdLimit = raiseFileLimit()
        guard fdLimit > sessions + 100 else {
            throw ValidationError("the open-file limit is \(fdLimit); \(sessions) sessions need more (raise the hard limit: ulimit -Hn)")
        }
        progress("open-file limit raised to \(fdLimit) (setrlimit; the coordinator inherits it)")
        let shape = softmaxShape(parameters: parameters)
        let pki = try BenchPKI.prepare(dir: net.pkiDir, agents: sessions)
        let coordinator = try CoordinatorProcess(options: net, pki: pki, parameters: (shape.features, shape.classes), extra: [
            "--mode", "fedbuff", "--buffer-size", "\(bufferSize)", "--evaluate-every", "0", "--max-staleness", "1000000",
            "--heartbeat-interval", "\(heartbeatInterval)", "--idle-timeout", "\(max(30, heartbeatInterval * 8))",
        ])
        defer { coordinator.stop() }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: threads)
        defer { group.shutdownGracefully { _ in } }

        try? await Task.sleep(for: .seconds(1))
        let baseRSS = coordinator.rss()
        let template = UpdateTemplate(parameterCount: shape.count, tensorShapes: shape.tensors)
        let stats = SimStats()
        var sims: [SimAgent] = []
        sims.reserveCapacity(sessions)
        progress("scale: coordinator pid \(coordinator.pid), RSS \(baseRSS / 1024) KiB before any session; ramping to \(sessions) sessions in batches of \(batch)")

        // 1. Ramp.
        let rampStart = Date()
        let rampCPU0 = coordinator.cpuSeconds()
        var index = 0
        var connectFailures = 0
        while index < sessions {
            let upper = min(sessions, index + batch)
            var contexts: [(Int, TLSContext)] = []
            for i in index..<upper { contexts.append((i, try TLSContext(configuration: pki.agentTLS(i), mode: .client))) }
            let batchSims = contexts.map { SimAgent(index: $0.0, stats: stats, policy: .hold, template: template, featureCount: shape.features) }
            let (host, port) = (coordinator.host, coordinator.port)
            let failures = await withTaskGroup(of: Int.self) { tasks in
                for (sim, (_, tls)) in zip(batchSims, contexts) {
                    tasks.addTask {
                        do { try await sim.connect(group: group, tls: tls, host: host, port: port); return 0 } catch { return 1 }
                    }
                }
                return await tasks.reduce(0, +)
            }
            connectFailures += failures
            sims += batchSims
            index = upper
            await waitFor("welcomes of batch ending at \(upper)", timeout: 120) { stats.snapshot.welcomed + stats.snapshot.errors + connectFailures >= upper }
            let s = stats.snapshot
            progress(String(format: "ramp: %d/%d welcomed (%d errors, %d connect failures) after %.1f s; coordinator RSS %d MiB",
                            s.welcomed, sessions, s.errors, connectFailures, Date().timeIntervalSince(rampStart), coordinator.rss() >> 20))
        }
        let rampSeconds = Date().timeIntervalSince(rampStart)
        let rampCPU = coordinator.cpuSeconds() - rampCPU0
        await waitFor("every agent holding a task", timeout: 120) { sims.filter(\.hasHeldTask).count >= stats.snapshot.welcomed }
        let welcomed = stats.snapshot.welcomed
        progress(String(format: "ramp done: %d sessions in %.1f s (%.0f handshakes+admissions/s), coordinator CPU %.1f s; %@",
                        welcomed, rampSeconds, Double(welcomed) / rampSeconds, rampCPU, stats.snapshot.lastError))

        // 2. Idle: heartbeats only.
        try? await Task.sleep(for: .seconds(max(2, heartbeatInterval * 2)))  // settle
        stats.startRecording()
        let idleCPU0 = coordinator.cpuSeconds()
        let idleT0 = Date()
        try? await Task.sleep(for: .seconds(phaseSeconds))
        let idleCPU = (coordinator.cpuSeconds() - idleCPU0) / Date().timeIntervalSince(idleT0)
        let idleRTT = stats.stopRecording().sorted()
        let idleRSS = coordinator.rss()
        let perSession = Double(idleRSS - baseRSS) / Double(max(1, welcomed))
        progress(String(format: "idle: %d heartbeats, RTT p50 %.2f ms p99 %.2f ms max %.1f ms; coordinator CPU %.1f%% of a core; RSS %d MiB (%.1f KiB/session)",
                        idleRTT.count, percentile(idleRTT, 0.5) * 1e3, percentile(idleRTT, 0.99) * 1e3, (idleRTT.last ?? .nan) * 1e3,
                        idleCPU * 100, idleRSS >> 20, perSession / 1024))

        // 3. Active: every agent answers its task once, at a random moment of the phase.
        let acks0 = stats.snapshot.receivedAcks
        stats.startRecording()
        let activeCPU0 = coordinator.cpuSeconds()
        let activeT0 = Date()
        let shuffled = sims.shuffled()
        let spacing = phaseSeconds / Double(max(1, shuffled.count))
        for (i, sim) in shuffled.enumerated() {
            let due = activeT0.addingTimeInterval(Double(i) * spacing)
            let wait = due.timeIntervalSinceNow
            if wait > 0.002 { try? await Task.sleep(for: .milliseconds(Int(wait * 1000))) }
            sim.answerHeldTask()
        }
        let remaining = phaseSeconds - Date().timeIntervalSince(activeT0)
        if remaining > 0 { try? await Task.sleep(for: .milliseconds(Int(remaining * 1000))) }
        let activeSeconds = Date().timeIntervalSince(activeT0)
        let activeCPU = (coordinator.cpuSeconds() - activeCPU0) / activeSeconds
        let activeRTT = stats.stopRecording().sorted()
        let updates = stats.snapshot.receivedAcks - acks0
        let final = stats.snapshot
        progress(String(format: "active: %d updates (%.0f/s), RTT p50 %.2f ms p99 %.2f ms max %.1f ms; coordinator CPU %.1f%% of a core; %d refused (%@), %d errors, %d closed, %d missing replies",
                        updates, Double(updates) / activeSeconds, percentile(activeRTT, 0.5) * 1e3, percentile(activeRTT, 0.99) * 1e3,
                        (activeRTT.last ?? .nan) * 1e3, activeCPU * 100, final.refused, final.lastRefusal, final.errors, final.closed, final.heartbeatRepliesMissing))
        sims.forEach { $0.close() }

        let details: [String: Double] = [
            "sessionsRequested": Double(sessions), "sessionsWelcomed": Double(welcomed), "rampSeconds": rampSeconds,
            "rampCoordinatorCPUSeconds": rampCPU, "idleHeartbeats": Double(idleRTT.count),
            "idleRTTp50ms": percentile(idleRTT, 0.5) * 1e3, "idleRTTp99ms": percentile(idleRTT, 0.99) * 1e3,
            "activeHeartbeats": Double(activeRTT.count), "activeRTTp50ms": percentile(activeRTT, 0.5) * 1e3,
            "activeRTTp99ms": percentile(activeRTT, 0.99) * 1e3, "activeUpdates": Double(updates),
            "activeUpdatesPerSecond": Double(updates) / activeSeconds, "activeCPUCores": activeCPU, "idleCPUCores": idleCPU,
            "baseRSSBytes": Double(baseRSS), "idleRSSBytes": Double(idleRSS), "errors": Double(final.errors),
            "heartbeatInterval": heartbeatInterval,
        ]
        let sessionsNote = "\(welcomed) sessions"
        return [
            BenchResult(benchmark: "scale", figure: "sessions established (mutual TLS, admitted)", value: Double(welcomed), unit: "sessions",
                        limit: 5000, limitUnit: "sessions", limitDescription: "issue #6 goal", direction: .higherIsBetter, goal: 1, details: details),
            BenchResult(benchmark: "scale", figure: "heartbeat round trip p99, \(sessionsNote), small updates flowing", value: percentile(activeRTT, 0.99) * 1e3, unit: "ms",
                        limit: 100, limitUnit: "ms", limitDescription: "goal", direction: .lowerIsBetter, goal: 1, details: details),
            BenchResult(benchmark: "scale", figure: "heartbeat round trip p50, \(sessionsNote), small updates flowing", value: percentile(activeRTT, 0.5) * 1e3, unit: "ms",
                        limit: 100, limitUnit: "ms", limitDescription: "p99 goal, for scale", direction: .lowerIsBetter, goal: nil, details: details),
            BenchResult(benchmark: "scale", figure: "heartbeat round trip p99, \(sessionsNote), idle", value: percentile(idleRTT, 0.99) * 1e3, unit: "ms",
                        limit: 100, limitUnit: "ms", limitDescription: "goal", direction: .lowerIsBetter, goal: 1, details: details),
            BenchResult(benchmark: "scale", figure: "coordinator RSS per idle session", value: perSession / 1024, unit: "KiB",
                        limit: 100, limitUnit: "KiB", limitDescription: "goal", direction: .lowerIsBetter, goal: 1, details: details),
            BenchResult(benchmark: "scale", figure: "coordinator CPU at idle (heartbeats only), \(sessionsNote)", value: idleCPU * 100, unit: "% of a core",
                        limit: 200, limitUnit: "% (2 cores)", limitDescription: "the machine", direction: .lowerIsBetter, goal: nil, details: details),
        ]
    }
}
