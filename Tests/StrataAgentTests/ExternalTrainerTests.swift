import Foundation
import Logging
import StrataCore
import StrataData
import StrataWire
import Testing
@testable import StrataAgent

/// A real trainer process (a short Python script speaking §11) behind `ExternalTrainer`: results, and every
/// failure of §11.3 turned into a `TrainerFailure` with its reason, the process killed and restarted.
@Suite(.serialized) struct ExternalTrainerTests {
    /// Adds 0.5 to every parameter. Its behaviour on train requests is set by the file `mode` next to it, read
    /// at each request: ok, crash, hang, error, garbage, print.
    static let script = #"""
    import json, os, struct, sys, time
    out = sys.stdout.buffer
    here = os.path.dirname(os.path.abspath(__file__))
    def read(n):
        data = b""
        while len(data) < n:
            chunk = sys.stdin.buffer.read(n - len(data))
            if not chunk: sys.exit(0)
            data += chunk
        return data
    def send(header, body=b""):
        h = json.dumps(header).encode()
        out.write(struct.pack("<IQ", len(h), len(body)) + h + body); out.flush()
    print("trainer up", file=sys.stderr, flush=True)
    while True:
        hl, bl = struct.unpack("<IQ", read(12))
        header = json.loads(read(hl)); body = read(bl)
        if header["type"] == "shutdown": sys.exit(0)
        if header["type"] == "setup":
            rows = header["arrays"][1]["shape"][0]
            send({"type": "ready", "id": header["id"], "interface": 1, "name": "test trainer, %d rows" % rows}); continue
        mode = open(os.path.join(here, "mode")).read().strip()
        if header["type"] == "evaluate":
            if mode == "outputs":   # the model's logits on the one evaluation row
                send({"type": "evaluated", "id": header["id"], "metrics": {"eval_loss": 0.75, "eval_accuracy": 0.5},
                      "arrays": [{"name": "outputs", "dtype": "float32", "shape": [1, 2]}]}, struct.pack("<2f", 0.0, 2.0)); continue
            send({"type": "evaluated", "id": header["id"], "metrics": {"eval_loss": 0.75, "eval_accuracy": 0.5}}); continue
        if mode == "crash":
            print("about to crash", file=sys.stderr, flush=True); sys.exit(3)
        if mode == "hang": time.sleep(3600)
        if mode == "error":
            send({"type": "error", "id": header["id"], "message": "ValueError: cannot train"}); continue
        if mode == "garbage":
            out.write(b"\x05\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00hello"); out.flush(); continue
        n = len(body) // 4
        values = [v + 0.5 for v in struct.unpack("<%df" % n, body)]
        send({"type": "trained", "id": header["id"], "metrics": {"train_loss": 0.25, "eval_loss": 1.5, "eval_accuracy": 0.5},
              "arrays": header["arrays"]}, struct.pack("<%df" % n, *values))
    """#

    let directory: URL
    let spec = ModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 2)

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("strata-trainer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Self.script.write(to: directory.appendingPathComponent("trainer.py"), atomically: true, encoding: .utf8)
        try mode("ok")
    }

    func mode(_ value: String) throws {
        try value.write(to: directory.appendingPathComponent("mode"), atomically: true, encoding: .utf8)
    }

    func trainer(timeout: Duration = .seconds(20)) -> ExternalTrainer {
        var settings = ExternalTrainer.Settings(command: "exec python3 \(directory.appendingPathComponent("trainer.py").path)", timeout: timeout)
        settings.restart.initial = .milliseconds(50)
        return ExternalTrainer(settings: settings, logger: Logger(label: "test"))
    }

    var input: TrainerInput {
        let samples = LoadedSamples(train: Dataset(featureCount: 2, features: [1, 2, 3, 4], labels: [0, 1]),
                                    test: Dataset(featureCount: 2, features: [5, 6], labels: [1]),
                                    columns: [FeatureColumn(name: "a", kind: .real, declaredType: nil, missingCount: 0),
                                              FeatureColumn(name: "b", kind: .real, declaredType: nil, missingCount: 0)],
                                    labelColumn: "label")
        return TrainerInput(spec: spec, samples: samples, generation: 1, target: .identity, labels: [])
    }

    var task: TrainingTask {
        TrainingTask(taskID: 11, baseVersion: 2, kind: .train, hyperparameters: Hyperparameters(learningRate: 0.1, batchSize: 1, epochs: 1, seed: 1, proximalMu: 0),
                     parameters: [])
    }

    static func alive(_ pid: pid_t) -> Bool { kill(pid, 0) == 0 }

    func pid(_ trainer: ExternalTrainer) -> pid_t? { trainer.runningProcessID }

    @Test(.timeLimit(.minutes(1))) func aTrainerTrainsAndEvaluates() throws {
        let trainer = trainer()
        defer { trainer.shutdown() }
        let base: [Float] = [1, 2, 3, 4, 5, 6]
        let trained = try trainer.train(task, base: base, input: input)
        #expect(trained.parameters == base.map { $0 + 0.5 })
        #expect(trained.trainLoss == 0.25 && trained.before.loss == 1.5 && trained.before.accuracy == 0.5)
        let evaluated = try trainer.evaluate(task, base: base, input: input)
        #expect(evaluated.evaluation.loss == 0.75 && evaluated.evaluation.accuracy == 0.5)
        #expect(evaluated.statistics == nil, "no outputs: no statistics")
        // With the model's outputs the agent computes the evaluation and its statistics (option 2) itself.
        try mode("outputs")
        let withOutputs = try trainer.evaluate(task, base: base, input: input)
        #expect(withOutputs.evaluation.accuracy == 1)
        #expect(abs(withOutputs.evaluation.loss - Float(log(1 + exp(-2.0)))) < 1e-6)
        guard case .classification(let counts)? = withOutputs.statistics.map(EvaluationStatistics.init) else {
            Issue.record("no classification statistics: \(String(describing: withOutputs.statistics))")
            return
        }
        #expect(counts.support == [0, 1] && counts.predicted == [0, 1] && counts.correct == [0, 1])
        #expect(counts.positiveScores.reduce(0, +) == 1 && counts.positiveScores[88] == 1, "p(class 1) = 0.881 in bin 88")
        let first = try #require(pid(trainer))
        trainer.shutdown()
        #expect(pid(trainer) == nil)
        #expect(!Self.alive(first), "the trainer exits when the agent stops")
    }

    @Test(.timeLimit(.minutes(1))) func aCrashIsReportedWithItsStatusAndStderrAndTheTrainerComesBack() throws {
        let trainer = trainer()
        defer { trainer.shutdown() }
        try mode("crash")
        let failure = try #require(throws: TrainerFailure.self) { try trainer.train(task, base: [Float](repeating: 0, count: 6), input: input) }
        #expect(failure.reason.contains("exited with status 3") && failure.reason.contains("about to crash"), "\(failure.reason)")
        #expect(pid(trainer) == nil)
        try mode("ok")
        #expect(try trainer.train(task, base: [Float](repeating: 0, count: 6), input: input).parameters == [Float](repeating: 0.5, count: 6))
    }

    @Test(.timeLimit(.minutes(1))) func aHungTrainerIsKilledAtTheTimeout() throws {
        let trainer = trainer(timeout: .seconds(2))
        defer { trainer.shutdown() }
        _ = try trainer.evaluate(task, base: [Float](repeating: 0, count: 6), input: input)
        let hung = try #require(pid(trainer))
        try mode("hang")
        let started = ContinuousClock.now
        let failure = try #require(throws: TrainerFailure.self) { try trainer.train(task, base: [Float](repeating: 0, count: 6), input: input) }
        let waited = ContinuousClock.now - started
        #expect(failure.reason.contains("did not answer within"), "\(failure.reason)")
        #expect(waited >= .seconds(2) && waited < .seconds(10), "\(waited)")
        #expect(!Self.alive(hung), "the hung process is killed")
    }

    @Test(.timeLimit(.minutes(1))) func anErrorReplyKeepsTheProcessAndGarbageRestartsIt() throws {
        let trainer = trainer()
        defer { trainer.shutdown() }
        try mode("error")
        let failure = try #require(throws: TrainerFailure.self) { try trainer.train(task, base: [Float](repeating: 0, count: 6), input: input) }
        #expect(failure.reason.contains("ValueError: cannot train"))
        let kept = try #require(pid(trainer))
        try mode("garbage")
        let garbage = try #require(throws: TrainerFailure.self) { try trainer.train(task, base: [Float](repeating: 0, count: 6), input: input) }
        #expect(garbage.reason.contains("malformed reply"), "\(garbage.reason)")
        #expect(!Self.alive(kept))
        try mode("ok")
        _ = try trainer.train(task, base: [Float](repeating: 0, count: 6), input: input)
        #expect(try #require(pid(trainer)) != kept)
    }

    @Test(.timeLimit(.minutes(1))) func aCommandThatCannotRunFailsEveryTaskAndBacksOff() throws {
        var settings = ExternalTrainer.Settings(command: "exec /nonexistent/trainer", timeout: .seconds(5))
        settings.restart.initial = .milliseconds(200)
        let trainer = ExternalTrainer(settings: settings, logger: Logger(label: "test"))
        defer { trainer.shutdown() }
        let first = try #require(throws: TrainerFailure.self) { try trainer.train(task, base: [Float](repeating: 0, count: 6), input: input) }
        #expect(first.reason.contains("exited with status 127"), "\(first.reason)")
        let started = ContinuousClock.now
        _ = try #require(throws: TrainerFailure.self) { try trainer.train(task, base: [Float](repeating: 0, count: 6), input: input) }
        // The second start waited for the backoff (200 ms after one failure).
        #expect(ContinuousClock.now - started >= .milliseconds(150))
    }
}
