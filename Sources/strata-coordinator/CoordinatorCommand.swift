import ArgumentParser
import Foundation
import Logging
import StrataCoordinator
import StrataCore
import StrataConfiguration
import StrataLog
import StrataStore
import StrataTransport
import StrataWire
import Synchronization

@main
struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "strata-coordinator",
        abstract: "Run a Strata federation: accept agents over mutual TLS, aggregate their updates in latency tiers, keep the state in SQLite.",
        discussion: """
            Agents connect with certificates from the federation's CA (Certs/strata-pki.sh). The coordinator measures \
            each agent's response latency (task dispatch to update arrival), groups agents into latency tiers, and in \
            the default mode (strata) runs an asynchronous FedBuff-style buffer per tier (weight = samples x staleness \
            factor, K updates per step) whose tier models are combined into the global model with FedAT's cross-tier \
            weights. --mode runs the baselines on the same agents and data instead: fedavg, tifl, fedat, fedasync, \
            fedbuff (docs/ALGORITHMS.md). Each step's tier model, global model, provenance and update ids are written \
            to the --state database in one transaction before any agent is told "committed". Restarted on the same \
            --state file, it resumes from the last version, with the same --mode.

            Operators inspect and steer it with stratactl on the admin port (mutual TLS, admin certificates; viewer \
            certificates may only read; \
            --admin-port, default --port + 1); Prometheus scrapes /metrics, and orchestrators probe /healthz and /readyz, \
            on --metrics-port (plain HTTP on localhost; default --port + 2). docs/OPERATIONS.md describes both.

            The best version by the target metric (--target-metric: accuracy, macro-f1, auc or loss for softmax models; \
            rmse, mae, r2 or loss for linear ones; default loss) is kept with \
            its score whatever --keep-models says, also across restarts: `stratactl export-model best` writes it. \
            Only evaluation rounds that enough of the asked agents answered count (--evaluation-quorum, \
            --min-evaluation-clients). --min-clients holds training until that many agents are connected.

            A run ends at --target-accuracy/--target, --patience, --max-duration or --max-versions, whichever comes \
            first; a run given none of them ends when the target metric has not improved for 1800 s (the default \
            end, logged at start). The summary says why it ended.

            Progress goes to stdout, one line per evaluated model version; logs go to stderr. \
            Exit status: 0 finished (target reached, or an end without a target set: a limit, patience, the default \
            end); 3 stopped without reaching the target; 1 error. SIGINT/SIGTERM drain and exit 0.

            Example:
              strata-coordinator --cert Certs/out/coordinator.crt --key Certs/out/coordinator.key --ca Certs/out/ca.crt \\
                --state run/coordinator.sqlite --features 60 --classes 10 --target-accuracy 0.85
            """,
        version: BuildInfo.describe(program: "strata-coordinator", libraries: [
            ("OpenSSL", TLSContext.openSSLVersion), ("SQLite", SQLiteLibrary.version)]))

    @OptionGroup(title: "Settings file") var settings: SettingsOptions

    /// `--config FILE` is read before the flags are parsed (`CommandLineSources`): the file's settings come first.
    static func main() async {
        await main(CommandLineSources.ofThisProcess(program: "strata-coordinator").arguments)
    }

    @OptionGroup(title: "Network") var network: NetworkOptions
    @OptionGroup(title: "Connection and memory limits") var limits: LimitOptions
    @OptionGroup(title: "Admin API and metrics") var endpoints: EndpointOptions
    @OptionGroup(title: "TLS") var tls: TLSOptions
    @OptionGroup(title: "Model and local training") var model: ModelOptions
    @OptionGroup(title: "Aggregation") var aggregation: AggregationOptions
    @OptionGroup(title: "Divergence guard (docs/ALGORITHMS.md)") var divergence: DivergenceOptions
    @OptionGroup(title: "Synchronous rounds (fedavg, tifl, fedat)") var rounds: RoundOptions
    @OptionGroup(title: "Latency tiers (strata, tifl, fedat)") var tiering: TieringOptions
    @OptionGroup(title: "Stopping") var stop: StopOptions
    @OptionGroup(title: "Robustness against Byzantine agents (docs/SECURITY.md)") var robustness: RobustnessOptions
    @OptionGroup(title: "Preprocessing: federated standardisation (docs/ALGORITHMS.md)") var preprocessing: PreprocessingOptions
    @OptionGroup(title: "Output") var output: OutputOptions
    @OptionGroup(title: "Logging") var log: LogOptions

    @Option(name: .long, help: "The coordinator's SQLite state database (created if missing, resumed if present).")
    var state: String
    @Option(name: .long, help: ArgumentHelp(
        "Keep the parameters of the newest N global model versions in --state; older ones keep their row (provenance, counts, accuracy) but not their parameters, so the file stops growing by a model per commit. 0 keeps every version's. The best version by --target-metric is always kept, whatever its age.",
        valueName: "N"))
    var keepModels: Int = 100
    @Option(name: .long, help: ArgumentHelp("Also keep the parameters of every M-th version (versions divisible by M), for history; 0: only the newest --keep-models.",
                                            valueName: "M"))
    var keepEvery: Int = 100

    func validate() throws {
        guard keepModels >= 0 else { throw ValidationError("--keep-models must be >= 0 (0 keeps every version's parameters)") }
        guard keepEvery >= 0 else { throw ValidationError("--keep-every must be >= 0 (0 keeps no extra versions)") }
        try network.check()
        try limits.check(maxFrameBytes: network.maxFrameBytes)
        try endpoints.check()
        try model.check()
        try aggregation.check()
        try divergence.check()
        try rounds.check()
        try tiering.check()
        let spec = try model.resolve().spec
        try stop.check(model: spec)
        // Larger models travel in parts; a message is still one frame in the agents' stores (u32 length).
        if spec.parameterCount > (Int(UInt32.max) - network.maxFrameBytes) / 4 {
            throw ValidationError("the model (\(spec.summary)) has \(spec.parameterCount) parameters; at most \((Int(UInt32.max) - network.maxFrameBytes) / 4) (4 GiB of float32 less one frame) travel in one message")
        }
        let maxMessage = MessagePart.messageLimit(parameterCount: spec.parameterCount, featureCount: spec.featureCount, maxFrameBytes: network.maxFrameBytes)
        if let budget = limits.frameMemoryBudget, maxMessage > 0 {
            let needed = ConnectionLimitSettings.messageReservation(maxFrameBytes: network.maxFrameBytes, maxMessageBytes: maxMessage)
            if budget < needed {
                throw ValidationError("--frame-memory-budget (\(budget)) must be at least \(needed) bytes for this model: one update in parts (its values plus a frame) and the frame that brings its last part")
            }
        }
        try robustness.check()
        try preprocessing.check()
        do { try ruleSettings().validate() } catch { throw ValidationError("\(error)") }
    }

    func run() async throws {
        if settings.printIfAsked(self, program: "strata-coordinator") { return }
        log.bootstrap()
        let logger = Logger(label: "strata.coordinator")
        let resolved = try model.resolve()
        model.releaseArchive()
        var config = CoordinatorConfiguration(
            tls: TLSConfiguration(certificateChainFile: tls.cert, privateKeyFile: tls.key, trustRootsFile: tls.ca, cipherSuites: tls.tlsCiphersuites,
                                  revocationListFile: tls.crl),
            statePath: state,
            model: resolved.spec)
        config.initialParameters = resolved.initial
        config.host = network.host
        config.port = network.port
        config.maxFrameBytes = network.maxFrameBytes
        config.updateEncoding = network.updateEncoding
        config.taskEncoding = network.taskEncoding
        limits.apply(to: &config)
        config.heartbeatInterval = .milliseconds(Int64(network.heartbeatInterval * 1000))
        config.sessionIdleTimeout = .milliseconds(Int64(network.idleTimeout * 1000))
        config.drainPolicy = network.drain
        config.modelRetention = ModelRetention(latest: keepModels, every: keepEvery)
        config.admin = endpoints.admin(agentPort: network.port)
        config.metrics = endpoints.metrics(agentPort: network.port)
        if network.suspectAfter != nil || network.lostAfter != nil {
            let suspect = network.suspectAfter ?? network.heartbeatInterval * 3
            config.health = HealthPolicy(suspectAfter: suspect, lostAfter: network.lostAfter ?? max(network.idleTimeout, suspect + 1))
        }
        config.training = TrainingConfig(learningRate: model.learningRate, batchSize: model.batchSize, epochs: model.localEpochs,
                                         seed: model.seed, proximalMu: model.proximalMu)
        config.aggregation.mode = aggregation.mode
        config.aggregation.rule = try ruleSettings()
        config.aggregation.maxUpdateNorm = aggregation.maxUpdateNorm > 0 ? aggregation.maxUpdateNorm : nil
        config.minTaskInterval = aggregation.minTaskInterval > 0 ? .milliseconds(Int64(aggregation.minTaskInterval * 1000)) : nil
        config.paceRatio = aggregation.paceRatio > 0 ? aggregation.paceRatio : nil
        config.aggregation.divergence = divergence.policy()
        config.tiering = try tiering.configuration()
        config.stop = StopCondition(maxVersions: stop.maxVersions, maxDuration: stop.maxDuration.map { .milliseconds(Int64($0 * 1000)) })
        config.stop.targetMetric = stop.metric(for: model.model)
        config.stop.target = stop.targetAccuracy ?? stop.target
        config.stop.patience = stop.patience.map { .milliseconds(Int64($0 * 1000)) }
        config.minClients = stop.minClients
        config.evaluateEvery = stop.effectiveEvaluateEvery
        config.evaluationInterval = stop.evaluateInterval.map { .milliseconds(Int64($0 * 1000)) }
        config.evaluationTimeout = .milliseconds(Int64(stop.evaluationTimeout * 1000))
        config.stop.minEvaluationClients = stop.minEvaluationClients
        config.stop.evaluationQuorum = robustness.evaluationQuorum
        // Evaluation answers and the statistics phase keep at least 4x (FederatedStandardization.defaultWeightRatio):
        // their figures are the pooled rows' only when honest agents of different sizes are not capped, and their
        // liars are met by trimming and the quorum; a tighter cap pays off for training weights (docs/SECURITY.md).
        let figuresRatio = max(robustness.maxWeightRatio, FederatedStandardization.defaultWeightRatio)
        config.stop.evaluationCombination = EvaluationCombination(trim: robustness.evaluationTrim,
                                                                  weightRatio: robustness.maxWeightRatio > 0 ? figuresRatio : nil)
        config.maxAgentSamples = robustness.maxAgentSamples
        config.preprocessing = try preprocessing.settings(maxWeightRatio: robustness.maxWeightRatio > 0 ? figuresRatio : .infinity)
        config.maxSampleWeightRatio = robustness.maxWeightRatio > 0 ? robustness.maxWeightRatio : nil

        let readyFile = output.readyFile
        let classifier = config.model.isClassifier
        let curve = try output.curveCSV.map { try CurveWriter(path: $0, mode: aggregation.mode.rawValue) }
        let summary: CoordinatorSummary
        do {
            summary = try await CoordinatorService.run(configuration: config, logger: logger) { event in
                Self.report(event, readyFile: readyFile, classifier: classifier)
                if case .evaluated(let result) = event { curve?.append(result) }
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
            if summary.target != nil, !summary.targetReached { throw ExitCode(3) }   // a target on any metric
        }
    }

    /// "rmse 1.2346  mae 0.98  r2 0.9512  " / "macro-f1 0.7712  auc 0.8843  ": the pooled metrics a round reported,
    /// in a fixed order (errors in the target's units with 5 significant digits, scores with 4 decimals).
    static func metricsText(_ metrics: [String: Double]) -> String {
        var text = ""
        for name in ["rmse", "mae"] { if let v = metrics[name] { text += String(format: "%@ %.5g  ", name, v) } }
        for name in ["r2", "macro-f1", "auc"] { if let v = metrics[name] { text += String(format: "%@ %.4f  ", name, v) } }
        return text
    }

    func ruleSettings() throws -> RuleSettings {
        var r = RuleSettings.defaults(for: aggregation.mode)
        r.bufferSize = aggregation.bufferSize
        r.bufferTimeout = aggregation.bufferTimeout > 0 ? aggregation.bufferTimeout : nil
        r.staleness = try StalenessFunction(parsing: aggregation.staleness)
        r.serverOptimizer = aggregation.optimizerSettings(modeDefault: r.serverOptimizer)
        r.maxStaleness = aggregation.maxStaleness
        r.mixingAlpha = aggregation.alpha
        r.tierMixing = aggregation.tierMixing
        r.crossTier = aggregation.crossTier
        r.crossTierWeighting = aggregation.crossTierWeights ?? r.crossTierWeighting
        r.clientsPerRound = rounds.clientsPerRound
        r.roundDeadline = rounds.roundDeadline
        r.overSelection = rounds.overSelection
        r.tierSelection = try rounds.selection()
        r.adaptiveInterval = rounds.adaptiveInterval
        r.plannedRounds = rounds.plannedRounds
        r.seed = model.seed
        r.robustness = try robustness.rule()
        return r
    }

    /// `classifier`: lines show accuracy (a model of a number shows RMSE, MAE and R² instead).
    static func report(_ event: CoordinatorEvent, readyFile: String?, classifier: Bool) {
        switch event {
        case .listening(let addresses):
            let agents = addresses.agents
            print("listening on \(agents.host):\(agents.port)")
            var lines = "\(agents.host) \(agents.port)\n"
            if let admin = addresses.admin {
                print("admin API on \(admin.host):\(admin.port) (mutual TLS, admin certificates)")
                lines += "admin \(admin.host) \(admin.port)\n"
            }
            if let metrics = addresses.metrics {
                print("metrics on http://\(metrics.host):\(metrics.port)/metrics")
                lines += "metrics \(metrics.host) \(metrics.port)\n"
            }
            if let readyFile {
                try? lines.write(toFile: readyFile, atomically: true, encoding: .utf8)
            }
        case .restored(let version, let committed):
            print("state: version \(version), \(committed) committed updates")
        case .versionCommitted, .healthChanged:
            break
        case .divergenceRecovered(let d):
            print(String(format: "divergence: %@; stepped back to version %lld (loss %@) as version %lld; server step x%.4g (learning rate %.4g)",
                         d.detail, d.bestVersion, d.bestLoss.map { String(format: "%.4f", $0) } ?? "-", d.restoredVersion,
                         d.stepScale, d.serverLearningRate))
        case .tiersChanged(let moves):
            let formed = moves.filter { $0.reason == .formation }
            if !formed.isEmpty {
                let tiers = Dictionary(grouping: formed, by: \.to).sorted { $0.key < $1.key }.map { tier, moves in
                    "tier \(tier) (\(moves.count)): " + moves.map(\.clientID).sorted().joined(separator: ", ")
                }
                print("tiers formed: \(tiers.joined(separator: "; "))")
            }
        case .evaluated(let r):
            // "clients ANSWERED/ASKED"; a round below the quorum is marked, and never counts. A linear model's
            // accuracy is always 0: its line shows RMSE, MAE and R² (in the target's units) instead.
            var line = String(format: "version %5lld  ", r.version)
            if classifier { line += String(format: "accuracy %.4f  ", r.accuracy) }
            line += Self.metricsText(r.metrics)
            line += String(format: "loss %.4f  clients %d/%d  elapsed %.1fs", r.loss, r.clients, r.askedClients, r.versionElapsedSeconds)
            if !r.counted { line += "  not counted (quorum \(r.requiredClients))" } else if r.newBest { line += "  best" }
            // Older agents send no statistics: the pooled metrics then stand for some of the answers only.
            if !r.metrics.isEmpty, r.statisticsClients < r.clients { line += "  metrics from \(r.statisticsClients)/\(r.clients) answers" }
            print(line)
        case .stopped(let s):
            let last: String
            if classifier {
                last = s.lastEvaluation.map { String(format: "accuracy %.4f  %@(version %lld)", $0.accuracy, metricsText($0.metrics), $0.version) } ?? "not evaluated"
            } else {
                last = s.lastEvaluation.map { String(format: "%@loss %.4f  (version %lld)", metricsText($0.metrics), $0.loss, $0.version) } ?? "not evaluated"
            }
            let best = s.best.map { b in
                String(format: "version %lld, %@ %.4f (%d/%d agents answered)", b.version, b.metric, b.score, b.answered, b.asked)
            } ?? "none (no evaluation counted)"
            let bestAccuracy = classifier ? "\n  best accuracy     \(s.bestAccuracy.map { String(format: "%.4f", $0) } ?? "-")" : ""
            print("""
                stopped: \(s.reason.rawValue)\(s.detail.map { " — \($0)" } ?? "")
                  mode              \(s.mode)\(s.tierCount > 0 ? " (\(s.tierCount) tiers)" : "")
                  final version     \(s.finalVersion)
                  last evaluation   \(last)\(bestAccuracy)
                  best version      \(best)
                  target            \(s.target.map { String(format: "%@ %.4f (%@)", s.targetMetric, $0, s.targetReached ? "reached" : "not reached") } ?? "none")\(s.timeToTargetSeconds.map { String(format: " after %.1f s", $0) } ?? "")
                  updates accepted  \(s.updatesAccepted)
                  updates refused   \(s.updatesRefused)
                  wall time         \(String(format: "%.1f s", s.wallSeconds))
                """)
        }
        fflush(nil)
    }
}

struct EndpointOptions: ParsableArguments {
    @Option(name: .long, help: "Address of the admin API (mutual TLS; admits admin certificates, and viewer certificates for reads only).")
    var adminHost: String = "127.0.0.1"
    @Option(name: .long, help: "Port of the admin API (default: --port + 1, or 0 = a free port when --port is 0).")
    var adminPort: Int?
    @Flag(name: .long, help: "Do not serve the admin API.")
    var noAdmin = false
    @Option(name: .long, help: "Address of /metrics, /healthz and /readyz (plain HTTP: keep it on localhost or a private network).")
    var metricsHost: String = "127.0.0.1"
    @Option(name: .long, help: "Port of /metrics, /healthz and /readyz (default: --port + 2, or 0 = a free port when --port is 0).")
    var metricsPort: Int?
    @Flag(name: .long, help: "Do not serve /metrics, /healthz and /readyz.")
    var noMetrics = false

    func admin(agentPort: Int) -> Endpoint? {
        noAdmin ? nil : Endpoint(host: adminHost, port: adminPort ?? (agentPort == 0 ? 0 : agentPort + 1))
    }

    func metrics(agentPort: Int) -> Endpoint? {
        noMetrics ? nil : Endpoint(host: metricsHost, port: metricsPort ?? (agentPort == 0 ? 0 : agentPort + 2))
    }

    func check() throws {
        for (name, port) in [("--admin-port", adminPort), ("--metrics-port", metricsPort)] {
            if let port, !(0...65535).contains(port) { throw ValidationError("\(name) must be between 0 and 65535") }
        }
        if noAdmin, adminPort != nil { throw ValidationError("--no-admin and --admin-port exclude each other") }
        if noMetrics, metricsPort != nil { throw ValidationError("--no-metrics and --metrics-port exclude each other") }
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
    @Option(name: .long, help: "Failure detector: seconds of silence before a connected agent is suspect (default: 3 heartbeat intervals).")
    var suspectAfter: Double?
    @Option(name: .long, help: "Failure detector: seconds of silence (connected or not) before an agent is lost (default: --idle-timeout).")
    var lostAfter: Double?
    @Option(name: .long, help: "On SIGTERM: flush (step open buffers and rounds with what they have and commit them) or abandon (agents re-send after the restart).")
    var drain: DrainPolicy = .flush
    @Option(name: .long, help: ArgumentHelp("How agents send deltas: float32 (exact), q8 (8-bit blocks, ~3.9x smaller) or top-k:FRACTION (the largest FRACTION of each tensor's values with their indices, e.g. top-k:0.05; 8 bytes per value kept). Lossy encodings use error feedback on the agent. Agents without the capability send float32, which is always accepted.", valueName: "ENCODING"))
    var updateEncoding: DeltaEncoding = .float32
    @Option(name: .long, help: ArgumentHelp("How train tasks carry the model: float32, or q8 / top-k:FRACTION of the difference from the model the agent got in its previous task (the coordinator keeps a copy of it per session, at most 256 MiB in all; the agent's first task of a session is float32). Agents without the capability get float32.", valueName: "ENCODING"))
    var taskEncoding: DeltaEncoding = .float32

    func check() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be between 0 and 65535") }
        guard maxFrameBytes >= 4096, maxFrameBytes <= Int(UInt32.max) else { throw ValidationError("--max-frame-bytes must be between 4096 and 4294967295") }
        guard heartbeatInterval >= 0.1 else { throw ValidationError("--heartbeat-interval must be at least 0.1 seconds") }
        guard idleTimeout > heartbeatInterval * 2 else { throw ValidationError("--idle-timeout must exceed twice --heartbeat-interval") }
        let suspect = suspectAfter ?? heartbeatInterval * 3
        let lost = lostAfter ?? max(idleTimeout, suspect + 1)
        guard suspect > heartbeatInterval else { throw ValidationError("--suspect-after must exceed --heartbeat-interval, or every agent would look suspect between heartbeats") }
        guard lost > suspect else { throw ValidationError("--lost-after (\(lost) s) must exceed --suspect-after (\(suspect) s)") }
    }
}

struct TLSOptions: ParsableArguments {
    @Option(name: .long, help: "The coordinator's certificate (PEM), role coordinator.")
    var cert: String
    @Option(name: .long, help: "The coordinator's private key (PEM).")
    var key: String
    @Option(name: .long, help: "The federation CA certificate (PEM) that signs every agent's certificate.")
    var ca: String
    @Option(name: .long, help: ArgumentHelp(
        "TLS 1.3 cipher suites in order of preference, colon-separated (default: OpenSSL's, AES-256-GCM first). The coordinator's order decides for every port.",
        discussion: "For a security policy, e.g. TLS_AES_256_GCM_SHA384 alone where 256-bit keys are required; on AES-NI machines AES-128-GCM measured no faster here (docs/PERFORMANCE.md)."))
    var tlsCiphersuites: String?
    @Option(name: .long, help: ArgumentHelp(
        "Certificate revocation list (PEM, from Certs/strata-pki.sh revoke|crl): revoked agent, admin and viewer certificates are refused at the handshake on the agent and the admin port.",
        discussion: "Reloaded on SIGHUP and whenever the file changes (checked every 2 s); new connections use the new list, established sessions continue (stratactl evict ends one now). A reload that fails keeps the previous list and logs why. The CRL must be signed by --ca; once its nextUpdate has passed every connection is refused, so regenerate it in time (strata-pki.sh crl; 365 days by default).",
        valueName: "file"))
    var crl: String?
}

extension ModelKind: ExpressibleByArgument {}
extension MLP.Activation: ExpressibleByArgument {}

struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "Model family: softmax (multinomial logistic regression), linear (least squares), mlp (a multilayer perceptron: --hidden, --activation; classes, or a number with --regression) or custom (the tensors of --initial-model, trained by the data owners' own trainers).")
    var model: ModelKind = .softmaxRegression
    @Option(name: .long, help: "Feature count; every agent's data must have exactly this many feature columns.")
    var features: Int
    @Option(name: .long, help: "Classes for softmax and mlp (labels 0..<classes); ignored for linear and for mlp with --regression.")
    var classes: Int = 10
    @Flag(name: .long, help: "mlp: predict a number (one output, half the squared error; the target standardised like --model linear's) instead of classes.")
    var regression = false
    @Option(name: .long, help: ArgumentHelp(
        "mlp: the hidden layers' widths, input side first, comma-separated (1 to 16 layers of 1 to 65536 units; default: 32,32). Weights start seeded by --seed (He-uniform for relu, Glorot for tanh).",
        valueName: "widths"))
    var hidden: String?
    @Option(name: .long, help: "mlp: the hidden layers' nonlinearity, relu or tanh (default: relu).")
    var activation: MLP.Activation?
    @Option(name: .long, help: ArgumentHelp(
        "The starting parameters, as a NumPy .npz of float32 arrays (numpy.savez(path, name=array, …)). Required by --model custom, whose tensors they define (names, shapes, order); for a built-in model they must be its tensors (weight, bias; layer1.weight, … for mlp). Read at every start: its values start a new state database; on a restart its tensors must be the ones the database recorded.",
        valueName: "file"))
    var initialModel: String?
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

    /// --hidden as typed: `32,32`.
    var hiddenWidths: [Int]? {
        let parts = (hidden ?? "32,32").split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else { return nil }
        return parts.map { $0! }
    }

    /// The model the flags describe, and its starting parameters when --initial-model gives them (after `check`).
    func resolve() throws -> (spec: ModelSpec, initial: [Float]?) {
        let arrays = try initialModel.map(Self.readArchive)
        let spec: ModelSpec
        switch model {
        case .linearRegression: spec = ModelSpec(kind: .linearRegression, featureCount: features, outputCount: 1)
        case .softmaxRegression: spec = ModelSpec(kind: .softmaxRegression, featureCount: features, outputCount: classes)
        case .mlp: spec = ModelSpec(kind: .mlp, featureCount: features, outputCount: regression ? 1 : classes, hidden: hiddenWidths ?? [], activation: activation ?? .relu)
        case .custom:
            let tensors = (arrays ?? []).map { TensorShape(name: $0.name, shape: $0.shape) }
            guard ModelSpec.isValid(kind: .custom, featureCount: features, outputCount: classes, hidden: [], tensors: tensors) else {
                throw ValidationError("--initial-model \(initialModel ?? ""): a custom model needs 1 to \(ModelSpec.maxTensors) arrays with distinct names, rank at most 8, and at most 2^31 - 1 values in all")
            }
            spec = ModelSpec(kind: .custom, featureCount: features, outputCount: classes, tensors: tensors)
        }
        guard let arrays else { return (spec, nil) }
        // A built-in model started from a file: the file must hold exactly its tensors.
        let expected = spec.tensorShapes.map { "\($0.name)\($0.shape)" }, given = arrays.map { "\($0.name)\($0.shape)" }
        guard expected == given else {
            throw ValidationError("--initial-model \(initialModel ?? "") holds \(given.joined(separator: ", ")), but the model (\(spec.summary)) has \(expected.joined(separator: ", ")): the same names and shapes in the same order (numpy.savez keeps the keyword order)")
        }
        return (spec, arrays.flatMap(\.values))
    }

    /// `validate()` and `run()` both resolve the model: the archive is read and parsed once, and kept here from
    /// one to the other (a 400-MB initial model read twice at start cost twice the time and a second copy).
    private static let archives = Mutex<[String: [NumPyArchive.Array]]>([:])

    static func readArchive(_ path: String) throws -> [NumPyArchive.Array] {
        if let cached = archives.withLock({ $0[path] }) { return cached }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ValidationError("cannot read --initial-model \(path): check the path and that this user may read it")
        }
        let arrays: [NumPyArchive.Array]
        do {
            arrays = try NumPyArchive.read(data)
        } catch {
            throw ValidationError("--initial-model \(path): \(error)")
        }
        archives.withLock { $0[path] = arrays }
        return arrays
    }

    /// Forgets the archive read for `validate()` once `run()` has its parameters.
    func releaseArchive() {
        guard let initialModel else { return }
        _ = Self.archives.withLock { $0.removeValue(forKey: initialModel) }
    }

    func check() throws {
        guard features >= 1 else { throw ValidationError("--features must be at least 1") }
        guard model == .linearRegression || (model == .mlp && regression) || classes >= 2 else { throw ValidationError("--classes must be at least 2") }
        guard !regression || model == .mlp else {
            throw ValidationError("--regression makes an mlp predict a number; for a linear model of a number use --model linear")
        }
        if model == .mlp {
            guard let widths = hiddenWidths, (1...MLP.maxHiddenLayers).contains(widths.count), widths.allSatisfy({ (1...MLP.maxWidth).contains($0) }) else {
                throw ValidationError("--hidden must be 1 to \(MLP.maxHiddenLayers) comma-separated widths of 1 to \(MLP.maxWidth) units, e.g. --hidden 32,32 (got \(hidden ?? ""))")
            }
        } else if hidden != nil || activation != nil {
            throw ValidationError("--hidden and --activation shape an MLP: add --model mlp, or leave them out")
        }
        if model == .custom, initialModel == nil {
            throw ValidationError("--model custom needs --initial-model FILE.npz: its arrays are the model's tensors (names, shapes, starting values)")
        }
        guard learningRate > 0, learningRate.isFinite else { throw ValidationError("--learning-rate must be positive") }
        guard batchSize >= 1 else { throw ValidationError("--batch-size must be at least 1") }
        guard localEpochs >= 1 else { throw ValidationError("--local-epochs must be at least 1") }
        guard proximalMu >= 0 else { throw ValidationError("--proximal-mu must be >= 0") }
    }
}

extension AggregationMode: ExpressibleByArgument {}
extension DrainPolicy: ExpressibleByArgument {}
extension TierMixing: ExpressibleByArgument {}
extension CrossTierCombination: ExpressibleByArgument {}
extension CrossTierWeighting: ExpressibleByArgument {}

struct AggregationOptions: ParsableArguments {
    @Option(name: .long, help: "Aggregation rule: strata (async tiers + global aggregator), fedavg, tifl, fedat, fedasync or fedbuff.")
    var mode: AggregationMode = .strata
    @Option(name: .long, help: "K: updates per buffer before a (tier) model steps (strata, fedbuff); a tier never waits for more than its live members.")
    var bufferSize: Int = 10
    @Option(name: .long, help: "Seconds after which a non-empty buffer steps anyway (0 disables).")
    var bufferTimeout: Double = 10
    @Option(name: .long, help: "How strata folds updates inside a tier: buffer (FedBuff) or fedasync (mix each update at once).")
    var tierMixing: TierMixing = .buffer
    @Option(name: .long, help: "How strata's tiers enter the global model: deltas (each tier step added with its FedAT cross-tier weight; all tiers continue from the new global) or models (FedAT's weighted average of tier models).")
    var crossTier: CrossTierCombination = .deltas
    @Option(name: .long, help: "Strata's cross-tier weights: fedat (T_{M+1-i}/T) or inverse (1/T_i normalised; equal to fedat with 2 tiers). Default: inverse.")
    var crossTierWeights: CrossTierWeighting?
    @Option(name: .long, help: "FedAsync mixing weight alpha in (0, 1] (fedasync; strata with --tier-mixing fedasync).")
    var alpha: Double = 0.6
    @Option(name: .long, help: "Staleness function: constant, polynomial:A, hinge:A:B, or fedbuff (1/sqrt(1+s)).")
    var staleness: String = "fedbuff"
    @Option(name: .long, help: ArgumentHelp(
        "Server optimiser of every step (every mode but fedasync; per tier in the tiered modes): sgd (with momentum), adam, yogi or adagrad (FedAdam, FedYogi, FedAdagrad of Reddi et al., ICLR 2021).",
        discussion: "Each tier keeps its own optimiser state (at most two model-sized arrays); it is not persisted: a restart starts it afresh.",
        valueName: "sgd|adam|yogi|adagrad"))
    var serverOptimizer: ServerOptimizerKind = .sgd
    @Option(name: .long, help: "Server learning rate eta_g (default: sgd 2 for strata and 1 for the published rules; adam and yogi 0.01; adagrad 0.1).")
    var serverLearningRate: Float?
    @Option(name: .long, help: "sgd: server momentum beta in [0, 1) (default: 0.5 for strata, 0 for the published rules). Same as --server-beta1.")
    var serverMomentum: Float?
    @Option(name: .long, help: "First-moment decay beta1 in [0, 1): adam, yogi, adagrad (default 0.9, as in Reddi et al.); for sgd its momentum.")
    var serverBeta1: Float?
    @Option(name: .long, help: "Second-moment decay beta2 in [0, 1): adam, yogi (default 0.99, as in Reddi et al.).")
    var serverBeta2: Float?
    @Option(name: .long, help: "tau, the adaptive optimisers' degree of adaptivity (epsilon; larger is less adaptive): adam, yogi, adagrad (default 0.001, as in Reddi et al.).")
    var serverTau: Float?
    @Option(name: .long, help: "Refuse updates more than this many versions behind.")
    var maxStaleness: Int = 100
    @Option(name: .long, help: "Refuse deltas whose L2 norm exceeds this (0 disables).")
    var maxUpdateNorm: Float = 10_000
    @Option(name: .long, help: ArgumentHelp("Pacing: at least this many seconds between the dispatch of two train tasks to one agent (0: none). Fast agents then send fewer updates (and take fewer models) without doing more work per task.", valueName: "SECONDS"))
    var minTaskInterval: Double = 0
    @Option(name: .long, help: ArgumentHelp("Adaptive pacing: at least (the slowest connected agent's smoothed task latency) / R seconds between two train tasks of one agent (0: off). --min-task-interval, when given, wins.", valueName: "R"))
    var paceRatio: Double = 0

    func check() throws {
        guard bufferSize >= 1 else { throw ValidationError("--buffer-size must be at least 1") }
        guard bufferTimeout >= 0, bufferTimeout.isFinite else { throw ValidationError("--buffer-timeout must be >= 0 seconds") }
        guard alpha > 0, alpha <= 1 else { throw ValidationError("--alpha must be in (0, 1]") }
        do { _ = try StalenessFunction(parsing: staleness) } catch { throw ValidationError("--staleness: \(error)") }
        if let lr = serverLearningRate, !(lr > 0 && lr.isFinite) { throw ValidationError("--server-learning-rate must be positive") }
        if let m = serverMomentum, !(0..<1).contains(m) { throw ValidationError("--server-momentum must be in [0, 1)") }
        if let b = serverBeta1, !(0..<1).contains(b) { throw ValidationError("--server-beta1 must be in [0, 1)") }
        if let b = serverBeta2, !(0..<1).contains(b) { throw ValidationError("--server-beta2 must be in [0, 1)") }
        if let t = serverTau, !(t > 0 && t.isFinite) { throw ValidationError("--server-tau must be positive") }
        if serverMomentum != nil, serverBeta1 != nil { throw ValidationError("--server-momentum and --server-beta1 set the same value: give one") }
        if serverMomentum != nil, serverOptimizer != .sgd {
            throw ValidationError("--server-momentum is sgd's; the \(serverOptimizer.rawValue) optimiser's first-moment decay is --server-beta1")
        }
        if serverOptimizer == .sgd, serverBeta2 != nil || serverTau != nil {
            throw ValidationError("--server-beta2 and --server-tau belong to the adaptive optimisers (--server-optimizer adam, yogi or adagrad)")
        }
        if serverOptimizer == .adagrad, serverBeta2 != nil { throw ValidationError("adagrad does not decay its second moment: --server-beta2 does not apply") }
        if mode == .fedasync, serverOptimizer != .sgd {
            throw ValidationError("fedasync mixes each update with --alpha and takes no server optimiser step: --server-optimizer does not apply")
        }
        guard maxStaleness >= 0 else { throw ValidationError("--max-staleness must be >= 0") }
        guard maxUpdateNorm >= 0 else { throw ValidationError("--max-update-norm must be >= 0") }
        guard minTaskInterval >= 0, minTaskInterval.isFinite else { throw ValidationError("--min-task-interval must be a number of seconds >= 0") }
        guard paceRatio >= 0, paceRatio.isFinite else { throw ValidationError("--pace-ratio must be a number >= 0 (0: off)") }
    }
}

extension ModelKind {
    /// The target metric when --target-metric is not given: the loss, for every model. It is smooth and it is
    /// what a central fit minimises: the best version by accuracy kept an early one on a table with a rare
    /// class (3 points of F1 below a central fit), the best by macro-F1 a lucky early one on a 4-class table
    /// (3 points of accuracy below); by loss every table of Deploy/tables.py is within its bar.
    var defaultTargetMetric: TargetMetric { .loss }
}

extension ServerOptimizerKind: ExpressibleByArgument {}

extension AggregationOptions {
    /// The optimiser and its hyperparameters: the mode's own defaults for sgd, the paper's for the adaptive
    /// ones, and the flags over them.
    func optimizerSettings(modeDefault: ServerOptimizerSettings) -> ServerOptimizerSettings {
        var o = serverOptimizer == modeDefault.kind ? modeDefault : ServerOptimizerSettings.defaults(for: serverOptimizer)
        if let lr = serverLearningRate { o.learningRate = lr }
        if let b = serverMomentum ?? serverBeta1 { o.beta1 = b }
        if let b = serverBeta2 { o.beta2 = b }
        if let t = serverTau { o.tau = t }
        return o
    }
}

struct DivergenceOptions: ParsableArguments {
    @Flag(name: .long, help: "Turn the divergence guard off (no step back, no lowering of the server step).")
    var noDivergenceGuard = false
    @Option(name: .long, help: ArgumentHelp("Step back when a counted evaluation's loss exceeds F x the best counted loss (in --divergence-evaluations evaluations in a row); 0: only non-finite losses.", valueName: "F"))
    var divergenceLossFactor: Double = 3
    @Option(name: .long, help: ArgumentHelp("Rising evaluations in a row (of versions made after the last step back) before stepping back.", valueName: "N"))
    var divergenceEvaluations: Int = 2
    @Option(name: .long, help: ArgumentHelp("Step back when N updates are refused as norm-too-large or non-finite within --divergence-window seconds, from more than half of the agents sending updates; 0: off.", valueName: "N"))
    var divergenceRefusals: Int = 10
    @Option(name: .long, help: ArgumentHelp("The refusal rule's window, in seconds.", valueName: "SECONDS"))
    var divergenceWindow: Double = 10
    @Option(name: .long, help: ArgumentHelp("Each step back multiplies the server step (eta_g; fedasync's alpha) by this, in (0, 1].", valueName: "F"))
    var divergenceStepFactor: Double = 0.5
    @Option(name: .long, help: ArgumentHelp("The server step never goes below this fraction of the configured one, in (0, 1].", valueName: "F"))
    var divergenceMinStepScale: Double = 1.0 / 64

    func policy() -> DivergencePolicy {
        var p = DivergencePolicy()
        p.enabled = !noDivergenceGuard
        p.lossFactor = divergenceLossFactor > 0 ? divergenceLossFactor : nil
        p.risingEvaluations = divergenceEvaluations
        p.refusals = divergenceRefusals > 0 ? divergenceRefusals : nil
        p.refusalWindow = divergenceWindow
        p.stepFactor = divergenceStepFactor
        p.minimumStepScale = divergenceMinStepScale
        return p
    }

    func check() throws {
        guard divergenceLossFactor == 0 || (divergenceLossFactor > 1 && divergenceLossFactor.isFinite) else {
            throw ValidationError("--divergence-loss-factor must be 0 (off) or a number > 1")
        }
        guard divergenceRefusals >= 0 else { throw ValidationError("--divergence-refusals must be >= 0 (0: off)") }
        do { try policy().validate() } catch { throw ValidationError("\(error)") }
    }
}

struct StopOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "The metric that picks the best version (kept for `stratactl export-model best`), that --target and --patience are about (default: loss, smooth and what a central fit minimises; --target-accuracy sets accuracy). Classification (softmax): accuracy, macro-f1 (mean of the per-class F1 scores), auc (ROC AUC, two classes only); regression (linear): rmse, mae (both in the target's own units), r2; both: loss (the training objective). Higher is better for accuracy, macro-f1, auc and r2 (an improvement is more than 0.001), lower for loss, rmse and mae (more than 0.1 %). All but accuracy and loss are pooled from the statistics agents send with each evaluation (agents of this version; older agents report accuracy and loss only, and a round counts for these metrics by the answers that carried statistics).",
        valueName: "METRIC"))
    var targetMetric: String?
    @Option(name: .long, help: "Stop when a counted evaluation reaches this value of --target-metric (at least it for accuracy, macro-f1, auc and r2; at most it for loss, rmse and mae).")
    var target: Double?
    @Option(name: .long, help: "Stop when a model version's sample-weighted evaluation accuracy reaches this (0-1); the same as --target-metric accuracy --target A.")
    var targetAccuracy: Double?
    @Option(name: .long, help: ArgumentHelp(
        "Stop when the target metric has not improved (see --target-metric) for this many seconds, counted from the start of training or the last improvement. Without --target, --patience, --max-duration and --max-versions a run ends by default after \(Int(EndConditions.defaultEndPatience)) s without improvement.",
        valueName: "SECONDS"))
    var patience: Double?
    @Option(name: .long, help: "Stop after this many model versions.")
    var maxVersions: Int64?
    @Option(name: .long, help: "Stop after this many seconds (counted from the coordinator's start).")
    var maxDuration: Double?
    @Option(name: .long, help: ArgumentHelp(
        "Hand out no training task (nor a statistics task: the statistics phase starts then, asking all N at once) before N agents are connected (logged once while it waits). Once training started it goes on with whoever is connected, also after a restart: a federation that loses agents slows down, it does not stall. Set it to the number of agents you start.",
        valueName: "N"))
    var minClients: Int = 1
    @Option(name: .long, help: "Evaluate every N-th global version on all connected agents (0 never; default 1, or 0 with --evaluate-interval).")
    var evaluateEvery: Int?
    @Option(name: .long, help: "Evaluate the latest global version at most every this many seconds (wall clock) instead; combine with --evaluate-every N to have both.")
    var evaluateInterval: Double?

    /// Versions between evaluations: --evaluate-interval replaces the per-version default.
    var effectiveEvaluateEvery: Int { evaluateEvery ?? (evaluateInterval == nil ? 1 : 0) }
    @Option(name: .long, help: "An evaluation answered by fewer agents than this does not count towards the target, the best version or --patience (it is still reported).")
    var minEvaluationClients: Int = 1
    @Option(name: .long, help: "Seconds to wait for evaluation results before closing an evaluation round.")
    var evaluationTimeout: Double = 30

    /// --target-metric, else accuracy with --target-accuracy, else the model's default.
    func metric(for model: ModelKind) -> TargetMetric {
        targetMetric.flatMap(TargetMetric.named) ?? (targetAccuracy != nil ? .accuracy : model.defaultTargetMetric)
    }

    func check(model spec: ModelSpec) throws {
        let model = spec.kind
        if let name = targetMetric, TargetMetric.named(name) == nil {
            throw ValidationError("--target-metric must be one of \(TargetMetric.all.map(\.name).joined(separator: ", ")), got \(name)")
        }
        if let problem = metric(for: model).problem(for: spec) { throw ValidationError("--target-metric: \(problem)") }
        if let t = targetAccuracy {
            guard (0...1).contains(t) else { throw ValidationError("--target-accuracy must be between 0 and 1") }
            guard target == nil else { throw ValidationError("--target-accuracy and --target exclude each other (--target-accuracy A is --target-metric accuracy --target A)") }
            guard metric(for: model) == .accuracy else {
                throw ValidationError("--target-accuracy needs the target metric accuracy, but it is \(metric(for: model).name): use --target with it, or --target-metric accuracy")
            }
        }
        if let t = target {
            guard t.isFinite else { throw ValidationError("--target must be a number") }
            let metric = metric(for: model)
            if [TargetMetric.accuracy, .macroF1, .auc].contains(metric), !(0...1).contains(t) {
                throw ValidationError("--target for \(metric.name) must be between 0 and 1")
            }
            if [TargetMetric.loss, .rmse, .mae].contains(metric), t < 0 { throw ValidationError("--target for \(metric.name) must be >= 0") }
            if metric == .r2, t > 1 { throw ValidationError("--target for r2 must be at most 1") }
        }
        if let p = patience, !(p > 0 && p.isFinite) { throw ValidationError("--patience must be a positive number of seconds") }
        if let v = maxVersions, v < 1 { throw ValidationError("--max-versions must be at least 1") }
        if let d = maxDuration, d <= 0 { throw ValidationError("--max-duration must be positive") }
        guard minClients >= 1 else { throw ValidationError("--min-clients must be at least 1") }
        guard effectiveEvaluateEvery >= 0 else { throw ValidationError("--evaluate-every must be >= 0") }
        if let i = evaluateInterval, !(i > 0 && i.isFinite) { throw ValidationError("--evaluate-interval must be a positive number of seconds") }
        if targetAccuracy != nil || target != nil, effectiveEvaluateEvery == 0, evaluateInterval == nil {
            throw ValidationError("--target-accuracy and --target need --evaluate-every >= 1 or --evaluate-interval")
        }
        guard minEvaluationClients >= 1 else { throw ValidationError("--min-evaluation-clients must be at least 1") }
        guard evaluationTimeout > 0 else { throw ValidationError("--evaluation-timeout must be positive") }
    }
}

struct RobustnessOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Refuse a hello announcing more training or evaluation rows than this (error out-of-range); every later count of the session is capped by what its hello announced.", valueName: "ROWS"))
    var maxAgentSamples: Int64 = 1_000_000_000
    @Option(name: .long, help: ArgumentHelp("An update's weight (and an evaluation answer's) counts at most R x the median agent's rows (evaluation answers and the statistics phase: max(R, 4) x); 0 disables the cap. Default 1: no agent weighs more than the median one, which keeps aligned attackers at their head count; raise it where agents' sizes differ a lot and are trusted.", valueName: "R"))
    var maxWeightRatio: Double = 1
    @Option(name: .long, help: ArgumentHelp("Adaptive norm bound: scale a delta down to C x the median of the agents' latest delta norms (one per agent; a lower quantile until most agents have reported, so the fastest few cannot set it); 0 disables it (--max-update-norm still refuses).", valueName: "C"))
    var clipMultiple: Double = 1
    @Option(name: .long, help: ArgumentHelp("How a full buffer's updates combine: mean (weighted, folded as they arrive), trimmed-mean[:BETA] (coordinate-wise and unweighted, drops the BETA fraction at each end, default 0.2) or median (coordinate-wise, unweighted). The robust folds keep a copy of every delta of the open buffer.", valueName: "FOLD"))
    var bufferFold: String = "mean"
    @Flag(name: .long, help: "Let one agent fill a buffer with several updates (default: one per agent per buffer, one more queued, a third refused over-share).")
    var allowSeveralUpdatesPerBuffer = false
    @Option(name: .long, help: ArgumentHelp("An evaluation counts towards the target, the best version and --patience only when at least this fraction of the agents it asked answered.", valueName: "FRACTION"))
    var evaluationQuorum: Double = 0.5
    @Option(name: .long, help: ArgumentHelp("Evaluation answers: drop this fraction of the agents at each end (per metric) before the weighted mean, in [0, 0.5).", valueName: "FRACTION"))
    var evaluationTrim: Double = 0.2

    func check() throws {
        guard maxAgentSamples >= 1 else { throw ValidationError("--max-agent-samples must be at least 1") }
        guard maxWeightRatio == 0 || (maxWeightRatio >= 1 && maxWeightRatio.isFinite) else { throw ValidationError("--max-weight-ratio must be 0 (off) or >= 1") }
        guard clipMultiple == 0 || (clipMultiple >= 1 && clipMultiple.isFinite) else { throw ValidationError("--clip-multiple must be 0 (off) or >= 1") }
        do { _ = try BufferFold(parsing: bufferFold) } catch { throw ValidationError("--buffer-fold: \(error)") }
        guard evaluationQuorum > 0, evaluationQuorum <= 1 else { throw ValidationError("--evaluation-quorum must be in (0, 1]") }
        guard evaluationTrim >= 0, evaluationTrim < 0.5 else { throw ValidationError("--evaluation-trim must be in [0, 0.5)") }
    }

    func rule() throws -> Robustness {
        var r = Robustness()
        r.clipMultiple = clipMultiple > 0 ? clipMultiple : nil
        r.fold = try BufferFold(parsing: bufferFold)
        r.onePerBuffer = !allowSeveralUpdatesPerBuffer
        return r
    }
}

struct PreprocessingOptions: ParsableArguments {
    enum Switch: String, ExpressibleByArgument, CaseIterable { case on, off }
    @Option(name: .long, help: ArgumentHelp("on: before training, every agent summarises its training rows (counts, means, variances; only aggregates leave it) and every feature, and a regression target, is standardised with the federated mean and standard deviation, part of the model from then on. off: rows are used as read.", valueName: "on|off"))
    var standardize: Switch = .on
    @Option(name: .long, help: ArgumentHelp("Use this preprocessing instead of gathering statistics: JSON {\"features\": [{\"center\": C, \"scale\": S, \"fill\": F}, ...], \"target\": {...}, \"labels\": [...], \"featureNames\": [...]} ; or the JSON stratactl export-model writes, which holds that object as \"preprocessing\".", valueName: "FILE"))
    var preprocessingFile: String?
    @Option(name: .long, help: ArgumentHelp("Statistics phase: fix the preprocessing once this many agents answered (default 3: from 3 answers on, a lying summary is outvoted; set it to the number of agents you start, and a smaller federation waits --statistics-timeout).", valueName: "N"))
    var statisticsAgents: Int = 3
    @Option(name: .long, help: ArgumentHelp("Statistics phase: fix it with the answers at hand (at least one) this long after the first request.", valueName: "SECONDS"))
    var statisticsTimeout: Double = 30

    func check() throws {
        guard statisticsAgents >= 1 else { throw ValidationError("--statistics-agents must be at least 1") }
        guard statisticsTimeout > 0, statisticsTimeout.isFinite else { throw ValidationError("--statistics-timeout must be positive") }
    }

    func settings(maxWeightRatio: Double) throws -> PreprocessingSettings {
        var settings = PreprocessingSettings()
        settings.standardize = standardize == .on
        settings.statisticsAgents = statisticsAgents
        settings.statisticsTimeout = .milliseconds(Int64(statisticsTimeout * 1000))
        settings.standardization = FederatedStandardization(standardize: standardize == .on, maxWeightRatio: maxWeightRatio)
        if let path = preprocessingFile {
            let data: Data
            do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
                throw ValidationError("--preprocessing-file \(path): cannot read it (\(error.localizedDescription))")
            }
            let fixed: Preprocessing
            struct Export: Decodable { var preprocessing: Preprocessing }
            if let direct = try? JSONDecoder().decode(Preprocessing.self, from: data) {
                fixed = direct
            } else if let export = try? JSONDecoder().decode(Export.self, from: data) {
                fixed = export.preprocessing
            } else {
                throw ValidationError("--preprocessing-file \(path): neither a preprocessing object nor an export's JSON with one (see --help)")
            }
            if let bad = fixed.features.firstIndex(where: { !$0.isValid }) {
                throw ValidationError("--preprocessing-file \(path): feature \(bad) has a zero, negative or non-finite scale")
            }
            settings.fixed = fixed
        }
        return settings
    }
}

struct OutputOptions: ParsableArguments {
    @Option(name: .long, help: "Write 'HOST PORT' (agents), then 'admin HOST PORT' and 'metrics HOST PORT' lines, to this file once every endpoint listens (for scripts; use with --port 0).")
    var readyFile: String?
    @Option(name: .long, help: "Write the final summary as JSON to this file (reason: why the run ended, detail: in a sentence; best: the best version and its score; lastEvaluation and best carry metrics: rmse, mae, r2 or macro-f1, auc).")
    var summaryFile: String?
    @Option(name: .long, help: "Append one CSV row per evaluated version (mode,elapsed_seconds,version,accuracy,loss,clients,expected_clients,asked_clients,counted,rmse,mae,r2,macro_f1,auc,updates,model_bytes) to this file: elapsed_seconds is when the version was created; clients answered, of asked_clients asked (expected_clients: those still connected at the close); counted is 1 when the round had its quorum; rmse, mae (in the target's units), r2, macro_f1 and auc are pooled from the agents' evaluation statistics, empty when the round did not report them; updates and model_bytes are the deltas received and the model bytes both ways (deltas and task parameters) until the version was made (a file begun without these columns keeps its header and gets none).")
    var curveCSV: String?
}

struct RoundOptions: ParsableArguments {
    @Option(name: .long, help: "C: clients per synchronous round (per tier for fedat); 0 selects every connected client and waits until all are idle.")
    var clientsPerRound: Int = 0
    @Option(name: .long, help: "Seconds after which a synchronous round closes with the updates it has (default: wait for every selected client).")
    var roundDeadline: Double?
    @Option(name: .long, help: "Over-selection r: select ceil(C*(1+r)) clients and close the round at the first C updates.")
    var overSelection: Double = 0
    @Option(name: .long, help: "TiFL tier selection: adaptive (credits and accuracies) or static.")
    var tierSelection: String = "adaptive"
    @Option(name: .long, help: "TiFL static selection: comma-separated probabilities per tier, fastest first (default uniform).")
    var tierProbabilities: String?
    @Option(name: .long, help: "TiFL adaptive: rounds between accuracy checks (I).")
    var adaptiveInterval: Int = 5
    @Option(name: .long, help: "TiFL adaptive: planned rounds R (each tier gets ceil(R / tiers) credits).")
    var plannedRounds: Int = 1000

    func selection() throws -> TierSelection {
        switch tierSelection {
        case "adaptive": return .adaptive
        case "static":
            guard let text = tierProbabilities else { return .fixed([]) }
            let values = text.split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces)) }
            guard values.allSatisfy({ $0 != nil }) else { throw ValidationError("--tier-probabilities must be comma-separated numbers, e.g. 0.5,0.3,0.2") }
            return .fixed(values.map { $0! })
        default:
            throw ValidationError("--tier-selection must be adaptive or static")
        }
    }

    func check() throws {
        guard clientsPerRound >= 0 else { throw ValidationError("--clients-per-round must be >= 0") }
        if let d = roundDeadline, !(d > 0 && d.isFinite) { throw ValidationError("--round-deadline must be a positive number of seconds") }
        guard overSelection >= 0, overSelection <= 10 else { throw ValidationError("--over-selection must be between 0 and 10") }
        guard adaptiveInterval >= 1 else { throw ValidationError("--adaptive-interval must be at least 1") }
        guard plannedRounds >= 1 else { throw ValidationError("--planned-rounds must be at least 1") }
        if case .fixed(let p) = try selection(), !p.isEmpty {
            guard p.allSatisfy({ $0 >= 0 && $0.isFinite }), p.reduce(0, +) > 0 else {
                throw ValidationError("--tier-probabilities must be non-negative with a positive sum")
            }
        }
        if tierProbabilities != nil, tierSelection != "static" { throw ValidationError("--tier-probabilities needs --tier-selection static") }
    }
}

struct TieringOptions: ParsableArguments {
    @Option(name: .long, help: "Number of latency tiers, or auto (cut at the large gaps in the sorted latencies).")
    var tiers: String = "auto"
    @Option(name: .long, help: "Largest tier count the automatic choice may pick.")
    var maxTiers: Int = 5
    @Option(name: .long, help: "Fewest clients a tier may hold.")
    var minTierSize: Int = 2
    @Option(name: .long, help: "Latency samples (answered tasks) before a client is placed in a tier.")
    var profilingTasks: Int = 2
    @Option(name: .long, help: "Latency smoothing factor (EWMA weight of the newest sample), in (0, 1].")
    var latencySmoothing: Double = 0.3
    @Option(name: .long, help: "Automatic tiers: a gap between consecutive sorted latencies counts when their ratio is at least this.")
    var tierGapRatio: Double = 1.5
    @Option(name: .long, help: "Re-tiering period in seconds.")
    var retierInterval: Double = 10
    @Option(name: .long, help: "Consecutive re-tierings that must agree before a client moves (hysteresis).")
    var tierHysteresis: Int = 3
    @Option(name: .long, help: "Most clients moved per re-tiering.")
    var maxTierMoves: Int = 2
    @Option(name: .long, help: "Seconds after the first agent joined at which tiers are formed even if some agents are not profiled yet.")
    var tierFormationTimeout: Double = 30
    @Option(name: .long, help: ArgumentHelp("Tiers form before an agent is profiled once its first task has been out F times the slowest profiled agent's latency: it can only belong to the slowest tier (0: wait for every profile or --tier-formation-timeout).", valueName: "F"))
    var tierStragglerFactor: Double = 4
    @Option(name: .long, help: "Pin a client to a tier (0 = fastest), as CLIENT=TIER; repeatable.")
    var pin: [String] = []

    func pins() throws -> [String: Int] {
        var result: [String: Int] = [:]
        for entry in pin {
            let parts = entry.split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2, !parts[0].isEmpty, let tier = Int(parts[1]), tier >= 0 else {
                throw ValidationError("--pin must be CLIENT=TIER with TIER >= 0, e.g. --pin agent-07=2 (got \"\(entry)\")")
            }
            result[parts[0]] = tier
        }
        return result
    }

    func configuration() throws -> TieringConfiguration {
        var c = TieringConfiguration()
        c.policy.tierCount = tiers == "auto" ? nil : Int(tiers)
        c.policy.maxTiers = maxTiers
        c.policy.minTierSize = minTierSize
        c.policy.profilingTasks = profilingTasks
        c.policy.smoothing = latencySmoothing
        c.policy.minGapRatio = tierGapRatio
        c.policy.hysteresisRounds = tierHysteresis
        c.policy.maxMovesPerRebalance = maxTierMoves
        c.pins = try pins()
        c.retierInterval = .milliseconds(Int64(retierInterval * 1000))
        c.formationTimeout = .milliseconds(Int64(tierFormationTimeout * 1000))
        c.stragglerFactor = tierStragglerFactor
        return c
    }

    func check() throws {
        if tiers != "auto" {
            guard let n = Int(tiers), n >= 1 else { throw ValidationError("--tiers must be auto or a number >= 1") }
        }
        guard profilingTasks >= 1 else { throw ValidationError("--profiling-tasks must be at least 1") }
        guard retierInterval > 0, retierInterval.isFinite else { throw ValidationError("--retier-interval must be positive") }
        guard tierFormationTimeout > 0, tierFormationTimeout.isFinite else { throw ValidationError("--tier-formation-timeout must be positive") }
        guard tierStragglerFactor == 0 || (tierStragglerFactor >= 1 && tierStragglerFactor.isFinite) else {
            throw ValidationError("--tier-straggler-factor must be 0 (off) or at least 1")
        }
        _ = try pins()
        do { try configuration().policy.validate() } catch { throw ValidationError("\(error)") }
    }
}

extension DeltaEncoding: ExpressibleByArgument {
    public init?(argument: String) { self.init(argument) }
    public var defaultValueDescription: String { description }
}
