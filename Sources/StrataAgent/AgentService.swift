import Foundation
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import StrataCore
import StrataData
import StrataStore
import StrataTransport
import StrataWire

public enum AgentExit: Sendable, Equatable {
    /// The coordinator ended the federation (target reached or a limit).
    case finished(String)
}

/// Fatal errors: retrying cannot help, the operator must act.
public enum AgentError: Error, CustomStringConvertible {
    case refused(ErrorMessage)
    case wrongServerRole(String)
    case incompatibleModel(String)
    case helloTooLarge(bytes: Int, columns: Int)
    case gaveUp(attempts: Int, lastError: String)
    /// The coordinator refused this agent's certificate during or right after the TLS handshake.
    case certificateRefused(TLSError)

    public var description: String {
        switch self {
        case .refused(let e): "the coordinator refused this agent: \(e.message) [\(e.code)]"
        case .wrongServerRole(let role): "the server's certificate has role \(role), not coordinator: check --coordinator and the CA"
        case .incompatibleModel(let s): s
        case .helloTooLarge(let bytes, let columns):
            "the names of the \(columns) feature columns make a hello of \(bytes) bytes, over the protocol's \(Hello.maxPayloadBytes): shorten them (alias the columns in --query) or use fewer columns (--feature-columns, --exclude-columns)"
        case .gaveUp(let attempts, let last): "gave up after \(attempts) connection attempts; last error: \(last). Check that the coordinator runs and the address is right"
        case .certificateRefused(let error):
            "the coordinator refused this agent's certificate: \(error.detail ?? "the TLS handshake was refused"). Retrying with the same "
                + "certificate cannot help. Likely reasons: it was revoked by the federation operator, it was not issued by the "
                + "federation CA the coordinator trusts, it has expired, or it lacks the agent role (Subject OU=agent) or the "
                + "clientAuth key usage. Check it with `openssl verify -CAfile CA.crt -purpose sslclient CERT` and "
                + "`openssl x509 -noout -subject -enddate -in CERT`, then ask the federation operator for a new certificate "
                + "(Certs/strata-pki.sh agent ID). TLS detail: \(error.reasons.joined(separator: "; "))"
        }
    }
}

/// Consecutive failed connection attempts: the exponent of the reconnect backoff and the count that
/// `maxConnectAttempts` limits. A connection the coordinator welcomed ends the streak, so an outage after a
/// working session backs off from the first step again (200 ms, not the delay reached in earlier outages)
/// and only attempts that failed one after another count towards giving up.
struct ReconnectStreak: Sendable, Hashable {
    private(set) var failures = 0

    /// A connection attempt or session ended with an error; `afterWelcome` if the coordinator had admitted
    /// it. Returns the attempt number of this failure in the current outage (1 = its first).
    mutating func failed(afterWelcome: Bool) -> Int {
        if afterWelcome { failures = 0 }
        failures += 1
        return failures
    }

    /// The session ended with the coordinator's goodbye.
    mutating func ended() { failures = 0 }
}

public struct AgentService: Sendable {
    public let configuration: AgentConfiguration
    let logger: Logger

    public init(configuration: AgentConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Loads the data, then connects, trains and reconnects until the coordinator ends the federation.
    public func run() async throws -> AgentExit {
        logger.info("reading the data", metadata: ["source": "\(configuration.data)"])
        let samples = try Self.prepare(try await DataSourceLoader.load(configuration.data), source: "\(configuration.data)", logger: logger)
        let emulation = configuration.emulation
        if emulation.isActive {
            logger.notice("emulating a slow client: training updates are delayed", metadata: [
                "addedDelay": "\(emulation.addedDelay)", "slowdown": "\(emulation.slowdownFactor)",
                "jitter": "\(emulation.jitter)", "seed": "\(emulation.seed)"])
        }
        let state = try AgentStateStore(path: configuration.statePath)
        let tlsContext = try TLSContext(configuration: configuration.tls, mode: .client)
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let trainingPool = NIOThreadPool(numberOfThreads: 2)  // training, evaluation
        trainingPool.start()
        let trainer: any LocalTrainer = configuration.trainerCommand.map { command in
            logger.info("tasks are trained by the trainer process", metadata: ["command": "\(command)", "timeout": "\(configuration.trainerTimeout)"])
            return ExternalTrainer(settings: .init(command: command, timeout: configuration.trainerTimeout,
                                                   source: Self.sourceDescription(configuration.data)), logger: logger)
        } ?? BuiltInTrainer()
        let current = NIOLockedValueBox(samples)
        let control = SessionControl()
        let refresher = configuration.refreshInterval.map { interval in
            logger.info("the data is read again periodically", metadata: ["every": "\(interval)"])
            return Task { await refreshLoop(every: interval, current: current, control: control) }
        }
        do {
            let exit = try await connectLoop(samples: current, control: control, state: state, tlsContext: tlsContext, group: group,
                                         trainingPool: trainingPool, trainer: trainer)
            refresher?.cancel()
            // Before the pool: a request in progress fails as the trainer's streams close, so nothing waits on it.
            trainer.shutdown()
            try? await trainingPool.shutdownGracefully()
            try? await group.shutdownGracefully()
            return exit
        } catch {
            refresher?.cancel()
            // Before the pool: a request in progress fails as the trainer's streams close, so nothing waits on it.
            trainer.shutdown()
            try? await trainingPool.shutdownGracefully()
            try? await group.shutdownGracefully()
            throw error
        }
    }

    /// Where the rows come from, for a trainer process that reads them itself (§11 `setup.source`): never a
    /// password (an ODBC source describes itself without one).
    static func sourceDescription(_ source: any DataSource) -> [String: String] {
        var description = ["description": "\(source)", "label": source.options.labelColumn]
        switch source.options.selection {
        case .table(let name, _): description["table"] = name
        case .query(let sql, _): description["query"] = sql
        }
        return description
    }

    /// Logs what was read (the columns used in order with their kind, the label, the columns left out, the
    /// rows) and makes the samples trainable with what protocol v1 offers.
    ///
    /// Protocol v1 carries no label vocabulary and no federated means: text labels are refused (mapping them
    /// through this agent's own vocabulary could number the classes differently on each agent), and missing
    /// values kept by `--null-policy impute` are filled with this agent's own training means, with a warning.
    /// When the coordinator sends the federation's vocabulary and means, use `mappingLabels(through:)` and
    /// `imputing(means:)` instead.
    static func prepare(_ loaded: LoadedSamples, source: String, logger: Logger) throws -> LoadedSamples {
        logger.info("data loaded", metadata: ["train": "\(loaded.train.count)", "test": "\(loaded.test.count)",
                                              "features": "\(loaded.columns.count)", "source": "\(source)"])
        for line in loaded.summaryLines { logger.info("\(line)") }
        if loaded.rows.skipped > 0 {
            logger.warning("rows left out for missing values", metadata: ["skipped": "\(loaded.rows.skipped)", "read": "\(loaded.rows.read)",
                                                                          "policy": "\(loaded.nullPolicy.rawValue)"])
        }
        if let counts = loaded.labelCounts {
            logger.info("text labels: numbered with the federation's vocabulary once the coordinator sends it",
                        metadata: ["labels": "\(counts.vocabulary.labels.prefix(10).joined(separator: ","))"])
        }
        if loaded.hasMissingValues {
            logger.info("missing feature values are filled with the federated means once the coordinator sends them (its own training means until then)",
                        metadata: ["values": "\(loaded.rows.missingValuesKept)"])
        }
        // The hello carries the feature names; a coordinator refuses one over the first-frame limit (256 bytes
        // kept for the agent's version string).
        let hello = Hello(agentVersion: "", featureCount: UInt32(clamping: loaded.columns.count), trainSampleCount: 0, evalSampleCount: 0,
                          pendingUpdateCount: 0, featureNames: loaded.featureColumns, capabilities: .all)
        guard hello.payloadBytes + 256 <= Hello.maxPayloadBytes else {
            throw AgentError.helloTooLarge(bytes: hello.payloadBytes, columns: loaded.columns.count)
        }
        return loaded
    }

    /// `samples`: the agent's rows, replaced by a refresh; each session starts with the newest.
    private func connectLoop(samples: NIOLockedValueBox<LoadedSamples>, control: SessionControl, state: AgentStateStore, tlsContext: TLSContext,
                             group: any EventLoopGroup, trainingPool: NIOThreadPool, trainer: any LocalTrainer) async throws -> AgentExit {
        let emulationRandom = NIOLockedValueBox(SeededGenerator(seed: configuration.emulation.seed))
        let feedback = NIOLockedValueBox(ErrorFeedback())
        var streak = ReconnectStreak()
        var generator = SystemRandomNumberGenerator()
        /// Between federations: a coordinator that is not there (yet) is the normal case, not a failure.
        var waitingForNextFederation = false
        while true {
            let outcome: AgentSession.Outcome
            let welcomed = NIOLockedValueBox(false)
            control.beginSession()
            let session = AgentSession(configuration: configuration, samples: samples.withLockedValue { $0 }, state: state, tlsContext: tlsContext,
                                       group: group, trainingPool: trainingPool, trainer: trainer, logger: logger, emulationRandom: emulationRandom, feedback: feedback, control: control)
            do {
                outcome = try await session.run(onWelcome: { welcomed.withLockedValue { $0 = true } })
                streak.ended()
                waitingForNextFederation = false
            } catch let error as AgentError {
                throw error
            } catch let error as TLSError where error.kind == .certificateRefused {
                throw AgentError.certificateRefused(error)
            } catch let error as DataSourceError {
                throw error
            } catch let error where control.endSession() {
                // Closed for a refresh: a planned reconnect, at once and not counted as a failure.
                logger.info("reconnecting with the refreshed rows", metadata: ["closed": "\(error)"])
                continue
            } catch where waitingForNextFederation && !welcomed.withLockedValue({ $0 }) {
                logger.debug("no federation to join yet", metadata: ["error": "\(error)", "retryIn": "\(configuration.nextFederationPoll)"])
                try await Task.sleep(for: configuration.nextFederationPoll)
                continue
            } catch {
                waitingForNextFederation = false
                let failures = streak.failed(afterWelcome: welcomed.withLockedValue { $0 })
                if let limit = configuration.maxConnectAttempts, failures >= limit {
                    throw AgentError.gaveUp(attempts: failures, lastError: "\(error)")
                }
                let delay = configuration.reconnect.delay(attempt: failures, random: Double.random(in: 0...1, using: &generator))
                logger.warning("connection lost; reconnecting", metadata: ["error": "\(error)", "attempt": "\(failures)", "in": "\(delay)"])
                try await Task.sleep(for: delay)
                continue
            }
            switch outcome {
            case .finished(let message):
                guard configuration.afterFederation == .wait else { return .finished(message) }
                // A service outlives a run: the next federation on this coordinator is joined as it starts. Its
                // welcome names a new federation, and updates of this one still stored are dropped then.
                logger.notice("federation finished; waiting for the next one (--after-federation exit stops instead)",
                              metadata: ["message": "\(message)", "tryingEvery": "\(configuration.nextFederationPoll)"])
                waitingForNextFederation = true
                try await Task.sleep(for: configuration.nextFederationPoll)
            case .retryAfter(let delay, let message):
                logger.notice("coordinator asked to come back later", metadata: ["message": "\(message)", "in": "\(delay)"])
                try await Task.sleep(for: delay)
            }
        }
    }
}
