import ArgumentParser
import Foundation
import NIOCore
import NIOPosix
import StrataWire

/// A model larger than a frame: a real `strata-coordinator` process with a softmax model of `--parameters`
/// float32 values (100 M by default: 400 MB, over the 64 MiB frame limit), and simulated agents that answer every
/// training task at once with a prepared update, tasks and updates travelling in parts (protocol §2). The
/// coordinator's peak RSS (VmHWM, /proc) over `--versions` committed versions is compared with the model's size;
/// the limit is 3 × the model (issue 13).
struct LargeModelBench: Benchmark {
    static let configuration = CommandConfiguration(
        commandName: "large-model",
        abstract: "Coordinator peak RSS with a model larger than a frame, against 3 x the model's size.")

    @OptionGroup var output: BenchOutputOptions
    @OptionGroup var net: NetBenchOptions

    @Option(name: .long, help: "Model parameters (softmax, 10 classes).")
    var parameters: Int = 100_000_000
    @Option(name: .long, help: "Simulated agents (each answers every task at once).")
    var agents: Int = 2
    @Option(name: .long, help: "Committed versions to wait for.")
    var versions: Int = 4
    @Option(name: .long, help: "Aggregation mode of the coordinator.")
    var mode: String = "fedavg"

    func measure() async throws -> [BenchResult] {
        raiseFileLimit()
        let shape = softmaxShape(parameters: parameters)
        let modelBytes = 4 * shape.count
        let pki = try BenchPKI.prepare(dir: net.pkiDir, agents: agents)
        let coordinator = try CoordinatorProcess(options: net, pki: pki, parameters: (shape.features, shape.classes), extra: [
            "--mode", mode, "--buffer-size", "\(agents)", "--evaluate-every", "0", "--max-staleness", "1000000", "--keep-models", "2",
        ])
        defer { coordinator.stop() }
        let idleRSS = coordinator.peakRSS()
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        defer { group.shutdownGracefully { _ in } }
        progress("large-model: preparing an update of \(shape.count) parameters (\(modelBytes >> 20) MiB)")
        let template = UpdateTemplate(parameterCount: shape.count, tensorShapes: shape.tensors)
        let stats = SimStats()
        let sims = try await SimAgent.connectAll(agents, policy: .answer, stats: stats, template: template, featureCount: shape.features,
                                                 pki: pki, group: group, coordinator: coordinator)
        defer { sims.forEach { $0.close() } }
        progress("large-model: \(agents) agents connected to coordinator pid \(coordinator.pid); waiting for \(versions) versions")
        let start = Date()
        var lastReport = Date()
        let needed = versions * agents
        guard await waitFor("\(versions) versions", timeout: 1800, {
            if Date().timeIntervalSince(lastReport) > 10 {
                lastReport = Date()
                progress("  \(stats.snapshot.committedAcks) of \(needed) updates committed, coordinator RSS \(coordinator.rss() >> 20) MiB, peak \(coordinator.peakRSS() >> 20) MiB")
            }
            return stats.snapshot.committedAcks >= needed || stats.snapshot.errors > 0
        }), stats.snapshot.errors == 0 else {
            throw ValidationError("no progress: \(stats.snapshot)\n\(coordinator.logTail())")
        }
        let wall = Date().timeIntervalSince(start)
        let peak = coordinator.peakRSS()
        let ratio = Double(peak) / Double(modelBytes)
        progress("large-model: \(stats.snapshot.committedAcks) updates committed in \(String(format: "%.1f", wall)) s; peak RSS \(peak >> 20) MiB (idle \(idleRSS >> 20) MiB) = \(String(format: "%.2f", ratio)) x the model")
        return [BenchResult(
            benchmark: "large-model", figure: "coordinator peak RSS with a \(shape.count)-parameter model in parts (\(mode), \(agents) agents, \(versions) versions)",
            value: Double(peak) / 1_048_576, unit: "MiB", limit: Double(modelBytes) / 1_048_576, limitUnit: "MiB",
            limitDescription: "the model's float32 size", direction: .lowerIsBetter, goal: 3,
            details: ["parameters": Double(shape.count), "idleMiB": Double(idleRSS) / 1_048_576, "seconds": wall, "ratio": ratio])]
    }
}
