import StrataCore
import StrataData
import StrataWire

/// Who computes a task on the agent: the built-in trainers, or the data owner's own process
/// (`ExternalTrainer`). The session, store-and-forward and heartbeats do not change with it.
///
/// Both calls run on a training thread and may block; they throw `TrainerFailure` when the task could not be
/// done (reported to the coordinator, the session goes on) and any other error when the agent cannot go on.
protocol LocalTrainer: Sendable {
    /// What this trainer adds to the agent's hello.
    var capabilities: AgentCapabilities { get }
    /// Nil when this trainer can train `spec`; otherwise why not (the agent closes the session saying so).
    func refusal(of spec: ModelSpec) -> String?
    func train(_ task: TrainingTask, base: [Float], input: TrainerInput) throws -> TrainedModel
    func evaluate(_ task: TrainingTask, base: [Float], input: TrainerInput) throws -> EvaluatedModel
    /// Called once when the agent stops.
    func shutdown()
}

/// What a trainer gets with each task: the model and the rows as the model sees them.
struct TrainerInput: Sendable {
    var spec: ModelSpec
    var samples: LoadedSamples
    /// Identifies `samples` (and their preprocessing): a new value means other rows.
    var generation: Int
    /// The regression target's transform (statistics are summed in the target's own units).
    var target: ColumnTransform
    /// The federation's text labels, class k = labels[k]; empty for numeric labels.
    var labels: [String]
}

struct TrainedModel: Sendable {
    /// The new parameters, flat in the spec's order.
    var parameters: [Float]
    var trainLoss: Float
    /// The received parameters on the evaluation rows, before training.
    var before: Evaluation
}

struct EvaluatedModel: Sendable {
    var evaluation: Evaluation
    /// Option 2, when the trainer computes it.
    var statistics: WireEvaluationStatistics?
}

/// The task could not be done, and why; the agent reports it (update option 0x8003) and goes on.
struct TrainerFailure: Error, CustomStringConvertible {
    var reason: String
    var description: String { reason }
}

/// Softmax, linear regression and the MLP of StrataCore, in the agent's process.
struct BuiltInTrainer: LocalTrainer {
    var capabilities: AgentCapabilities { .evaluationStatistics }

    func refusal(of spec: ModelSpec) -> String? {
        spec.kind == .custom
            ? "the federation trains a custom model (\(spec.summary)); this agent trains the built-in models only (softmax, linear, mlp): give it the model's trainer with --trainer-command"
            : nil
    }

    func train(_ task: TrainingTask, base: [Float], input: TrainerInput) throws -> TrainedModel {
        let h = task.hyperparameters
        let before = Trainer.evaluate(spec: input.spec, parameters: base, data: input.samples.test)
        let result = Trainer.train(spec: input.spec, parameters: base, data: input.samples.train,
                                   config: TrainingConfig(learningRate: h.learningRate, batchSize: Int(max(1, h.batchSize)),
                                                          epochs: Int(h.epochs), seed: h.seed, proximalMu: h.proximalMu))
        return TrainedModel(parameters: result.parameters, trainLoss: result.meanLoss, before: before)
    }

    func evaluate(_ task: TrainingTask, base: [Float], input: TrainerInput) throws -> EvaluatedModel {
        let evaluation = Trainer.evaluate(spec: input.spec, parameters: base, data: input.samples.test)
        // Option 2: the same evaluation as additive statistics, for RMSE, MAE, R², macro-F1, AUC.
        let statistics = input.samples.test.count > 0
            ? WireEvaluationStatistics(Trainer.evaluationStatistics(spec: input.spec, parameters: base, data: input.samples.test, target: input.target))
            : nil
        return EvaluatedModel(evaluation: evaluation, statistics: statistics)
    }

    func shutdown() {}
}
