import ArgumentParser
import Foundation
import Logging
import StrataCoordinator
import StrataCore
import StrataLog
import StrataTransport

@main
struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "strata-coordinator",
        abstract: "Run a Strata federation: accept agents over mutual TLS, aggregate their updates, keep the state in SQLite.",
        discussion: """
            Agents connect with certificates from the federation's CA (Certs/strata-pki.sh). The coordinator hands each \
            connected agent a task (the current model and hyperparameters), folds every returned update into a buffer \
            weighted by samples x staleness factor, and steps the model when K updates are in (FedBuff-style). Each new \
            version and the ids of the updates it contains are written to the --state database in one transaction \
            before any agent is told "committed". Restarted on the same --state file, it resumes from the last version.

            Progress goes to stdout, one line per evaluated model version; logs go to stderr. \
            Exit status: 0 finished (target reached, or a limit reached when no target was set); 3 stopped without \
            reaching --target-accuracy; 1 error. SIGINT/SIGTERM drain and exit 0.

            Example:
              strata-coordinator --cert Certs/out/coordinator.crt --key Certs/out/coordinator.key --ca Certs/out/ca.crt \\
                --state run/coordinator.sqlite --features 60 --classes 10 --target-accuracy 0.85
            """)

    @OptionGroup(title: "Network") var network: NetworkOptions
    @OptionGroup(title: "TLS") var tls: TLSOptions
    @OptionGroup(title: "Model and local training") var model: ModelOptions
    @OptionGroup(title: "Aggregation") var aggregation: AggregationOptions
    @OptionGroup(title: "Stopping") var stop: StopOptions
    @OptionGroup(title: "Output") var output: OutputOptions
    @OptionGroup(title: "Logging") var log: LogOptions

    @Option(name: .long, help: "The coordinator's SQLite state database (created if missing, resumed if present).")
    var state: String

    func validate() throws {
        try network.check()
        try model.check()
        try aggregation.check()
        try stop.check()
    }

    func run() async throws {
        log.bootstrap()
        let logger = Logger(label: "strata.coordinator")
        var config = CoordinatorConfiguration(
            tls: TLSConfiguration(certificateChainFile: tls.cert, privateKeyFile: tls.key, trustRootsFile: tls.ca),
            statePath: state,
            model: ModelSpec(kind: model.model, featureCount: model.features, outputCount: model.model == .linearRegression ? 1 : model.classes))
        config.host = network.host
        config.port = network.port
        config.maxFrameBytes = network.maxFrameBytes
        config.heartbeatInterval = .milliseconds(Int64(network.heartbeatInterval * 1000))
        config.sessionIdleTimeout = .milliseconds(Int64(network.idleTimeout * 1000))
        config.training = TrainingConfig(learningRate: model.learningRate, batchSize: model.batchSize, epochs: model.localEpochs,
                                         seed: model.seed, proximalMu: model.proximalMu)
        config.aggregation.bufferSize = aggregation.bufferSize
        config.aggregation.staleness = try StalenessFunction(parsing: aggregation.staleness)
        config.aggregation.serverOptimizer = ServerOptimizer(learningRate: aggregation.serverLearningRate, momentum: aggregation.serverMomentum)
        config.aggregation.maxStaleness = aggregation.maxStaleness
        config.aggregation.maxUpdateNorm = aggregation.maxUpdateNorm > 0 ? aggregation.maxUpdateNorm : nil
        config.stop = StopCondition(targetAccuracy: stop.targetAccuracy, maxVersions: stop.maxVersions,
                                    maxDuration: stop.maxDuration.map { .milliseconds(Int64($0 * 1000)) })
        config.evaluateEvery = stop.evaluateEvery
        config.evaluationTimeout = .milliseconds(Int64(stop.evaluationTimeout * 1000))

        let readyFile = output.readyFile
        let summary: CoordinatorSummary
        do {
            summary = try await CoordinatorService.run(configuration: config, logger: logger) { event in
                Self.report(event, readyFile: readyFile)
            }
        } catch {
            logger.critical("coordinator failed: \(error)")
            throw ExitCode(1)
        }
        if let path = output.summaryFile {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(summary).write(to: URL(fileURLWithPath: path))
        }
        switch summary.reason {
        case .failure: throw ExitCode(1)
        case .signal: return
        default:
            if summary.targetAccuracy != nil, !summary.targetReached { throw ExitCode(3) }
        }
    }

    static func report(_ event: CoordinatorEvent, readyFile: String?) {
        switch event {
        case .listening(let host, let port):
            print("listening on \(host):\(port)")
            if let readyFile {
                try? "\(host) \(port)\n".write(toFile: readyFile, atomically: true, encoding: .utf8)
            }
        case .restored(let version, let committed):
            print("state: version \(version), \(committed) committed updates")
        case .versionCommitted:
            break
        case .evaluated(let r):
            print(String(format: "version %5lld  accuracy %.4f  loss %.4f  clients %d/%d  elapsed %.1fs",
                         r.version, r.accuracy, r.loss, r.clients, r.expectedClients, r.elapsedSeconds))
        case .stopped(let s):
            let accuracy = s.lastEvaluation.map { String(format: "%.4f (version %lld)", $0.accuracy, $0.version) } ?? "not evaluated"
            print("""
                stopped: \(s.reason.rawValue)\(s.detail.map { " — \($0)" } ?? "")
                  final version     \(s.finalVersion)
                  last accuracy     \(accuracy)
                  best accuracy     \(s.bestAccuracy.map { String(format: "%.4f", $0) } ?? "-")
                  target            \(s.targetAccuracy.map { String(format: "%.4f (%@)", $0, s.targetReached ? "reached" : "not reached") } ?? "none")
                  updates accepted  \(s.updatesAccepted)
                  updates refused   \(s.updatesRefused)
                  wall time         \(String(format: "%.1f s", s.wallSeconds))
                """)
        }
        fflush(nil)
    }
}

struct NetworkOptions: ParsableArguments {
    @Option(name: .long, help: "Address to listen on for agents.")
    var host: String = "127.0.0.1"
    @Option(name: .long, help: "Port to listen on for agents (0 picks a free port; see --ready-file).")
    var port: Int = 7300
    @Option(name: .long, help: "Largest frame accepted, in bytes; checked before a frame is buffered.")
    var maxFrameBytes: Int = 64 * 1024 * 1024
    @Option(name: .long, help: "Seconds between heartbeats, announced to agents.")
    var heartbeatInterval: Double = 2
    @Option(name: .long, help: "Seconds without any frame after which a session is closed as stalled.")
    var idleTimeout: Double = 15

    func check() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        guard maxFrameBytes >= 4096, maxFrameBytes <= Int(UInt32.max) else { throw ValidationError("--max-frame-bytes must be between 4096 and 4294967295") }
        guard heartbeatInterval >= 0.1 else { throw ValidationError("--heartbeat-interval must be at least 0.1 seconds") }
        guard idleTimeout > heartbeatInterval * 2 else { throw ValidationError("--idle-timeout must exceed twice --heartbeat-interval") }
    }
}

struct TLSOptions: ParsableArguments {
    @Option(name: .long, help: "The coordinator's certificate (PEM), role coordinator.")
    var cert: String
    @Option(name: .long, help: "The coordinator's private key (PEM).")
    var key: String
    @Option(name: .long, help: "The federation CA certificate (PEM) that signs every agent's certificate.")
    var ca: String
}

extension ModelKind: ExpressibleByArgument {}

struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Model family: softmax (multinomial logistic regression) or linear (least squares).")
    var model: ModelKind = .softmaxRegression
    @Option(name: .long, help: "Feature count; every agent's data must have exactly this many feature columns.")
    var features: Int
    @Option(name: .long, help: "Classes for softmax (labels 0..<classes); ignored for linear.")
    var classes: Int = 10
    @Option(name: .long, help: "Local SGD learning rate.")
    var learningRate: Float = 0.01
    @Option(name: .long, help: "Local mini-batch size.")
    var batchSize: Int = 10
    @Option(name: .long, help: "Local epochs per task.")
    var localEpochs: Int = 20
    @Option(name: .long, help: "Proximal term mu (FedProx); 0 disables it.")
    var proximalMu: Float = 0
    @Option(name: .long, help: "Base seed for local shuffling (each task uses seed + task id).")
    var seed: UInt64 = 1

    func check() throws {
        guard features >= 1 else { throw ValidationError("--features must be at least 1") }
        guard model == .linearRegression || classes >= 2 else { throw ValidationError("--classes must be at least 2") }
        guard learningRate > 0, learningRate.isFinite else { throw ValidationError("--learning-rate must be positive") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        guard localEpochs >= 1 else { throw ValidationError("--local-epochs must be at least 1") }
        guard proximalMu >= 0 else { throw ValidationError("--proximal-mu must be >= 0") }
    }
}

struct AggregationOptions: ParsableArguments {
    @Option(name: .long, help: "K: updates per buffer before the model steps.")
    var bufferSize: Int = 3
    @Option(name: .long, help: "Staleness function: constant, polynomial:A, hinge:A:B, or fedbuff (1/sqrt(1+s)).")
    var staleness: String = "fedbuff"
    @Option(name: .long, help: "Server learning rate eta_g applied to the buffer's weighted mean delta.")
    var serverLearningRate: Float = 1.0
    @Option(name: .long, help: "Server momentum (0 disables).")
    var serverMomentum: Float = 0
    @Option(name: .long, help: "Refuse updates more than this many versions behind.")
    var maxStaleness: Int = 100
    @Option(name: .long, help: "Refuse deltas whose L2 norm exceeds this (0 disables).")
    var maxUpdateNorm: Float = 10_000

    func check() throws {
        guard bufferSize >= 1 else { throw ValidationError("--buffer-size must be at least 1") }
        do { _ = try StalenessFunction(parsing: staleness) } catch { throw ValidationError("--staleness: \(error)") }
        guard serverLearningRate > 0 else { throw ValidationError("--server-learning-rate must be positive") }
        guard (0..<1).contains(serverMomentum) else { throw ValidationError("--server-momentum must be in [0, 1)") }
        guard maxStaleness >= 0 else { throw ValidationError("--max-staleness must be >= 0") }
        guard maxUpdateNorm >= 0 else { throw ValidationError("--max-update-norm must be >= 0") }
    }
}

struct StopOptions: ParsableArguments {
    @Option(name: .long, help: "Stop when a model version's sample-weighted evaluation accuracy reaches this (0-1).")
    var targetAccuracy: Double?
    @Option(name: .long, help: "Stop after this many model versions.")
    var maxVersions: Int64?
    @Option(name: .long, help: "Stop after this many seconds.")
    var maxDuration: Double?
    @Option(name: .long, help: "Evaluate every N-th version on all connected agents (0 never).")
    var evaluateEvery: Int = 1
    @Option(name: .long, help: "Seconds to wait for evaluation results before closing an evaluation round.")
    var evaluationTimeout: Double = 30

    func check() throws {
        if let t = targetAccuracy, !(0...1).contains(t) { throw ValidationError("--target-accuracy must be between 0 and 1") }
        if let v = maxVersions, v < 1 { throw ValidationError("--max-versions must be at least 1") }
        if let d = maxDuration, d <= 0 { throw ValidationError("--max-duration must be positive") }
        guard evaluateEvery >= 0 else { throw ValidationError("--evaluate-every must be >= 0") }
        if targetAccuracy != nil, evaluateEvery == 0 { throw ValidationError("--target-accuracy needs --evaluate-every >= 1") }
        guard evaluationTimeout > 0 else { throw ValidationError("--evaluation-timeout must be positive") }
    }
}

struct OutputOptions: ParsableArguments {
    @Option(name: .long, help: "Write 'HOST PORT' to this file once listening (for scripts; use with --port 0).")
    var readyFile: String?
    @Option(name: .long, help: "Write the final summary as JSON to this file.")
    var summaryFile: String?
}
