import Foundation
import Logging
import NIOConcurrencyHelpers
import StrataCore
import StrataData
import StrataWire

/// Restarts after failures: 1 s, doubling, at most 60 s; back to the start after a successful reply.
/// Pure, so its schedule is tested without a process.
struct RestartPolicy: Sendable, Hashable {
    var initial: Duration = .seconds(1)
    var cap: Duration = .seconds(60)
    private(set) var failures = 0

    mutating func failed() { failures += 1 }
    mutating func succeeded() { failures = 0 }
    /// How long to wait before the next start (zero before the first failure).
    var delay: Duration {
        guard failures > 0 else { return .zero }
        let doublings = min(failures - 1, 30)
        return min(cap, initial * (1 << doublings))
    }
}

/// Hands each task to the data owner's long-lived process over the local interface (docs/PROTOCOL.md §11),
/// starting it on first use and again after it failed (with backoff). One request at a time: the calls come
/// from the agent's training threads and may block, each bounded by `timeout`.
final class ExternalTrainer: LocalTrainer, @unchecked Sendable {
    struct Settings: Sendable {
        var command: String
        /// Longest wait for any one reply (setup, train or evaluate).
        var timeout: Duration = .seconds(600)
        /// Where the agent read the rows: handed to the trainer in `setup`.
        var source: [String: String] = [:]
        var restart = RestartPolicy()
    }

    private struct State {
        var process: TrainerProcess?
        var setupGeneration: Int?
        var nextID: UInt64 = 1
        var restart: RestartPolicy
        var notBefore: ContinuousClock.Instant?
    }

    let settings: Settings
    private let logger: Logger
    /// Held for a whole exchange: requests strictly alternate with replies.
    private let state: NIOLockedValueBox<State>
    /// The process, reachable without waiting for an exchange to end (shutdown).
    private let current = NIOLockedValueBox<TrainerProcess?>(nil)
    private let stopped = NIOLockedValueBox(false)

    init(settings: Settings, logger: Logger) {
        self.settings = settings
        var trainerLogger = logger
        trainerLogger[metadataKey: "trainer"] = "\(settings.command)"
        self.logger = trainerLogger
        self.state = NIOLockedValueBox(State(restart: settings.restart))
    }

    /// Evaluation statistics (option 2) whenever the trainer sends its model's outputs with `evaluated`.
    var capabilities: AgentCapabilities { .evaluationStatistics }

    func refusal(of spec: ModelSpec) -> String? { nil }

    func train(_ task: TrainingTask, base: [Float], input: TrainerInput) throws -> TrainedModel {
        let h = task.hyperparameters
        let hyperparameters = TrainerInterface.Hyperparameters(
            learning_rate: Double(h.learningRate), batch_size: Int(max(1, h.batchSize)), epochs: Int(h.epochs), seed: h.seed,
            proximal_mu: Double(h.proximalMu))
        let tensors = Self.arrays(base, spec: input.spec)
        let reply = try exchange(input: input, expected: .trained(tensors: input.spec.tensorShapes)) { id in
            .train(id: id, task: task.taskID, baseVersion: task.baseVersion, hyperparameters: hyperparameters, tensors: tensors)
        }
        guard case .trained(let parameters, let trainLoss, let evalLoss, let evalAccuracy) = reply else {
            throw TrainerFailure(reason: "the trainer answered \(reply) to a train request")
        }
        return TrainedModel(parameters: parameters, trainLoss: trainLoss,
                            before: Evaluation(sampleCount: input.samples.test.count, loss: evalLoss, accuracy: evalAccuracy, meanSquaredError: 0))
    }

    func evaluate(_ task: TrainingTask, base: [Float], input: TrainerInput) throws -> EvaluatedModel {
        let tensors = Self.arrays(base, spec: input.spec)
        let test = input.samples.test
        let reply = try exchange(input: input, expected: .evaluated(rows: test.count, outputs: input.spec.outputCount)) { id in
            .evaluate(id: id, task: task.taskID, baseVersion: task.baseVersion, tensors: tensors)
        }
        guard case .evaluated(let loss, let accuracy, let outputs) = reply else {
            throw TrainerFailure(reason: "the trainer answered \(reply) to an evaluate request")
        }
        guard let outputs, test.count > 0 else {
            return EvaluatedModel(evaluation: Evaluation(sampleCount: test.count, loss: loss, accuracy: accuracy, meanSquaredError: 0), statistics: nil)
        }
        // The model's outputs: loss, accuracy and statistics all follow from them with the built-in arithmetic
        // (so they agree, as the coordinator checks); the trainer's own metrics are logged if they differ.
        let evaluation: Evaluation, statistics: EvaluationStatistics
        do {
            (evaluation, statistics) = try Trainer.evaluate(outputs: outputs, spec: input.spec, labels: test.labels, target: input.target)
        } catch {
            throw TrainerFailure(reason: "the trainer's outputs: \(error)")   // shapes and values were checked on reading
        }
        if abs(evaluation.accuracy - accuracy) > 1e-3 || abs(evaluation.loss - loss) > 1e-2 * max(1, evaluation.loss) {
            logger.notice("the trainer's metrics differ from those of its outputs; the outputs' are sent", metadata: [
                "task": "\(task.taskID)", "trainerAccuracy": "\(accuracy)", "accuracy": "\(evaluation.accuracy)",
                "trainerLoss": "\(loss)", "loss": "\(evaluation.loss)"])
        }
        return EvaluatedModel(evaluation: evaluation, statistics: WireEvaluationStatistics(statistics))
    }

    /// The running process's id (nil between a failure and the next start), for tests and logs.
    var runningProcessID: pid_t? { current.withLockedValue { $0?.pid } }

    /// Closes the trainer's stdin (its cue to exit) and kills it 5 s later if it has not. Never waits for a
    /// request in progress: that one fails as the streams close.
    func shutdown() {
        stopped.withLockedValue { $0 = true }
        guard let process = current.withLockedValue({ p -> TrainerProcess? in defer { p = nil }; return p }) else { return }
        logger.info("trainer stopped", metadata: ["how": "\(process.stop(grace: .seconds(5)))"])
    }

    /// The model's tensors as arrays, in the spec's order.
    static func arrays(_ flat: [Float], spec: ModelSpec) -> [TrainerInterface.Array] {
        var offset = 0
        return spec.tensorShapes.map { tensor in
            let count = TensorShape.elementCount(tensor.shape) ?? 0
            defer { offset += count }
            return TrainerInterface.Array(name: tensor.name, shape: tensor.shape, values: Array(flat[offset..<offset + count]))
        }
    }

    /// One request and its reply, (re)starting the process and sending `setup` first when needed. A reply of
    /// type `error` fails the task and keeps the process; anything else that goes wrong kills it, and the
    /// next request starts a new one after the backoff.
    private func exchange(input: TrainerInput, expected: TrainerInterface.Expectation,
                          request: (UInt64) -> TrainerInterface.Request) throws -> TrainerInterface.Reply {
        // The lock is held across the exchange: requests strictly alternate with replies (§11.1).
        try state.withLockedValue { s in
            guard !stopped.withLockedValue({ $0 }) else { throw TrainerFailure(reason: "the agent is stopping") }
            do {
                let process = try running(&s)
                if s.setupGeneration != input.generation {
                    let id = s.nextID
                    s.nextID += 1
                    let reply = try send(setupRequest(id: id, input: input), to: process, id: id, expected: .ready, maxValues: 0)
                    guard case .ready(let name) = reply else {
                        if case .error(let message) = reply { throw TrainerFailure(reason: "the trainer refused its setup: \(message)") }
                        throw TrainerProtocolError.malformed("expected ready")
                    }
                    logger.info("trainer ready", metadata: ["name": "\(name)", "pid": "\(process.pid)", "trainRows": "\(input.samples.train.count)"])
                    s.setupGeneration = input.generation
                }
                let id = s.nextID
                s.nextID += 1
                // A reply holds at most the model's values, or its outputs on the evaluation rows.
                let values = max(input.spec.parameterCount, input.samples.test.count * input.spec.outputCount)
                let reply = try send(request(id), to: process, id: id, expected: expected, maxValues: values)
                s.restart.succeeded()
                if case .error(let message) = reply { throw TrainerFailure(reason: "the trainer reported an error: \(message)") }
                return reply
            } catch let failure as TrainerFailure {
                throw failure
            } catch {
                throw fail(&s, error)
            }
        }
    }

    private func running(_ s: inout State) throws -> TrainerProcess {
        if let process = s.process { return process }
        if let notBefore = s.notBefore, notBefore > .now {
            let wait = notBefore - .now
            logger.notice("waiting before restarting the trainer", metadata: ["in": "\(wait)", "failures": "\(s.restart.failures)"])
            Thread.sleep(forTimeInterval: Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18)
        }
        let logger = self.logger
        // The database password stays with the agent: a trainer that reads the data itself has its own credentials.
        let process = try TrainerProcess(command: settings.command, environment: ["STRATA_TRAINER_INTERFACE": "\(TrainerInterface.version)"],
                                         withheld: ["STRATA_ODBC_PASSWORD"]) { line in
            logger.info("\(line)", metadata: ["stream": "stderr"])
        }
        logger.info("trainer started", metadata: ["pid": "\(process.pid)"])
        s.process = process
        current.withLockedValue { $0 = process }
        s.setupGeneration = nil
        s.nextID = 1
        return process
    }

    /// Kills the process after a failure, schedules the restart and says what happened.
    private func fail(_ s: inout State, _ error: any Error) -> TrainerFailure {
        var reason: String
        if let process = s.process {
            switch error {
            case TrainerProcess.Failure.closed:
                reason = "the trainer \(process.exitDescription(waiting: .seconds(2)))"
            case TrainerProcess.Failure.timedOut:
                reason = "the trainer did not answer within \(settings.timeout); it was killed"
            default:
                reason = "\(error); the trainer was killed"
            }
            process.kill()
            let tail = process.lastStderrLines.suffix(5).joined(separator: " | ")
            if !tail.isEmpty { reason += " (stderr: \(tail))" }
        } else {
            reason = "\(error)"
        }
        s.process = nil
        current.withLockedValue { $0 = nil }
        s.setupGeneration = nil
        s.restart.failed()
        s.notBefore = .now + s.restart.delay
        logger.error("trainer failed", metadata: ["reason": "\(reason)", "restartIn": "\(s.restart.delay)"])
        return TrainerFailure(reason: reason)
    }

    private func setupRequest(id: UInt64, input: TrainerInput) -> TrainerInterface.Request {
        .setup(id: id, model: TrainerInterface.ModelDescription(input.spec), featureNames: input.samples.featureColumns, labels: input.labels,
               source: settings.source, train: (input.samples.train.features, input.samples.train.labels),
               test: (input.samples.test.features, input.samples.test.labels))
    }

    private func send(_ request: TrainerInterface.Request, to process: TrainerProcess, id: UInt64,
                      expected: TrainerInterface.Expectation, maxValues: Int) throws -> TrainerInterface.Reply {
        let deadline = ContinuousClock.now + settings.timeout
        let encoded = TrainerInterface.encode(request)
        try encoded.prefix.withUnsafeBytes { try process.write($0, deadline: deadline) }
        for values in encoded.arrays {
            try values.withUnsafeBytes { try process.write($0, deadline: deadline) }
        }
        let lengths = try TrainerInterface.lengths(try process.read(12, deadline: deadline),
                                                   maxBody: 4 * maxValues + TrainerInterface.bodySlack)
        let header = try TrainerInterface.decodeHeader(try process.read(lengths.header, deadline: deadline))
        let body = try process.read(lengths.body, deadline: deadline)
        return try TrainerInterface.decode(header, body: body, id: id, expected: expected)
    }
}
