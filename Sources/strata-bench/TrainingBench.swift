import ArgumentParser
import Foundation
import StrataCore

/// An agent's local training (StrataCore's `Trainer`, softmax regression, minibatch SGD) against a NumPy
/// implementation of the same arithmetic on the same data in the same sample order, run as a subprocess in
/// the same run. Both start from the same parameters; their final parameters must agree to a tolerance.
struct TrainingBench: Benchmark {
    static let configuration = CommandConfiguration(
        commandName: "training",
        abstract: "Agent training epochs per second vs NumPy.",
        discussion: """
            The data is one client of the default synthetic federation (strata-datagen's defaults: Synthetic(1, 1), \
            30 clients, 60 features, 10 classes, at most 5000 samples per client, seed 1; by default the client \
            with the most training samples). The benchmark writes its training rows, labels, the Trainer's \
            per-epoch sample order and the initial (zero) parameters as raw little-endian files to a temporary \
            directory, runs Deploy/bench/softmax_numpy.py on them, reads its epochs per second from stdout, and \
            checks that both implementations end at the same parameters (max |difference| printed). Swift and \
            NumPy runs alternate (--rounds) and the best time of each counts. Run it from the package root, or \
            pass --numpy-script. NumPy runs with one BLAS thread, like the agent's training (one task at a time).
            """
    )

    @OptionGroup var output: BenchOutputOptions

    @Option(name: .customLong("batch-size"), help: "Minibatch size; repeat the option for several cases (10 is the federation's default).")
    var batchSizes: [Int] = [10, 100]

    @Option(help: "Epochs per timed training run (the federation's default task is 20 epochs).")
    var epochs = 20

    @Option(help: "Timed runs of each implementation per round; the best of all rounds counts.")
    var repetitions = 5

    @Option(help: "Rounds per batch size, each running Swift then NumPy, so that load from other processes hits both alike.")
    var rounds = 3

    @Option(help: "Learning rate (the federation's default is 0.01).")
    var learningRate: Float = 0.01

    @Option(help: "Client of the default synthetic federation whose training rows are used (0-29; default: the one with the most rows).")
    var client: Int?

    @Option(help: "Seed of the Trainer's per-epoch shuffles.")
    var seed: UInt64 = 1

    @Option(help: "Python interpreter with NumPy.")
    var python = "python3"

    @Option(help: "Path of the NumPy reference implementation (default: Deploy/bench/softmax_numpy.py, or mlp_numpy.py with --hidden).")
    var numpyScript: String?

    @Option(help: ArgumentHelp("Benchmark the built-in MLP with these hidden widths (relu), e.g. 32,32, instead of softmax regression.", valueName: "widths"))
    var hidden: String?

    var hiddenWidths: [Int]? { hidden.map { $0.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } } }
    var script: String { numpyScript ?? (hidden == nil ? "Deploy/bench/softmax_numpy.py" : "Deploy/bench/mlp_numpy.py") }

    @Option(help: "BLAS threads NumPy may use (OPENBLAS_NUM_THREADS, OMP_NUM_THREADS, MKL_NUM_THREADS).")
    var numpyThreads = 1

    @Option(help: "Largest accepted max |Swift − NumPy| over the final parameters, relative to max(1, max |parameter|).")
    var tolerance: Double = 1e-3

    func validate() throws {
        guard !batchSizes.isEmpty, batchSizes.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--batch-size must be at least 1") }
        guard epochs >= 1 else { throw ValidationError("--epochs must be at least 1") }
        guard repetitions >= 1 else { throw ValidationError("--repetitions must be at least 1") }
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1") }
        guard learningRate > 0, learningRate.isFinite else { throw ValidationError("--learning-rate must be positive") }
        if let client { guard (0..<30).contains(client) else { throw ValidationError("--client must be in 0..<30") } }
        guard numpyThreads >= 1 else { throw ValidationError("--numpy-threads must be at least 1") }
        guard tolerance > 0 else { throw ValidationError("--tolerance must be positive") }
        if let widths = hiddenWidths {
            guard !widths.isEmpty, widths.count <= MLP.maxHiddenLayers, widths.allSatisfy({ (1...MLP.maxWidth).contains($0) }) else {
                throw ValidationError("--hidden takes 1 to \(MLP.maxHiddenLayers) comma-separated widths of 1 to \(MLP.maxWidth), e.g. 32,32")
            }
        }
    }

    func measure() async throws -> [BenchResult] {
        let numpyScript = script
        guard FileManager.default.isReadableFile(atPath: numpyScript) else {
            throw ValidationError("cannot read \(numpyScript): run from the package root or pass --numpy-script")
        }
        progress("training: generating the default synthetic federation")
        let federation = SyntheticGenerator.generate(SyntheticConfig(), maxSamplesPerClient: 5000)
        let chosen = client ?? federation.indices.max { federation[$0].train.count < federation[$1].train.count }!
        let data = federation[chosen].train
        let spec = hiddenWidths.map { ModelSpec(kind: .mlp, featureCount: data.featureCount, outputCount: 10, hidden: $0) }
            ?? ModelSpec(kind: .softmaxRegression, featureCount: data.featureCount, outputCount: 10)
        let n = data.count
        let initial = spec.initialParameters(seed: seed)
        progress("training: client \(chosen), \(n) samples x \(spec.featureCount) features, \(spec.outputCount) classes, \(epochs) epochs per run")

        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("strata-bench-training-\(ProcessInfo.processInfo.processIdentifier)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try writeRaw(data.features, to: directory.appendingPathComponent("features.f32"))
        try writeRaw(data.labels.map { Int32($0) }, to: directory.appendingPathComponent("labels.i32"))
        try writeRaw(data.labels, to: directory.appendingPathComponent("labels.f32"))   // mlp_numpy.py's form
        try writeRaw(initial, to: directory.appendingPathComponent("initial.f32"))
        var order: [Int32] = []
        order.reserveCapacity(epochs * n)
        for epoch in 0..<epochs { order += Trainer.sampleOrder(count: n, seed: seed, epoch: epoch).map { Int32($0) } }
        try writeRaw(order, to: directory.appendingPathComponent("order.i32"))

        let numpyVersion = (try? runPython(["-c", "import numpy; print(numpy.__version__)"]))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
        var results: [BenchResult] = []
        for batch in batchSizes {
            let config = TrainingConfig(learningRate: learningRate, batchSize: batch, epochs: epochs, seed: seed)
            var trained = TrainingResult(parameters: [], meanLoss: 0, sampleCount: 0, steps: 0)
            var swiftSeconds = Double.infinity
            var numpy = NumPyRun(seconds: .infinity, epochsPerSecond: 0, meanLoss: .nan)
            for round in 1...rounds {
                progress("training: batch \(batch), round \(round)/\(rounds): Swift Trainer then NumPy, \(repetitions) runs each")
                swiftSeconds = min(swiftSeconds, bestTime(repetitions: repetitions) {
                    trained = Trainer.train(spec: spec, parameters: initial, data: data, config: config)
                })
                let run = try runNumPy(directory: directory, samples: n, spec: spec, batch: batch)
                if run.seconds < numpy.seconds { numpy = run }
            }
            let numpyParameters: [Float] = try readRaw(directory.appendingPathComponent("parameters.f32"))
            guard numpyParameters.count == trained.parameters.count else {
                throw ValidationError("NumPy wrote \(numpyParameters.count) parameters, expected \(trained.parameters.count)")
            }
            var maxDifference: Float = 0, maxMagnitude: Float = 0
            for (a, b) in zip(trained.parameters, numpyParameters) {
                maxDifference = max(maxDifference, abs(a - b))
                maxMagnitude = max(maxMagnitude, abs(a))
            }
            let lossDifference = abs(Double(trained.meanLoss) - numpy.meanLoss)
            progress("training: batch \(batch): max |Swift − NumPy| over the parameters \(maxDifference) (max |parameter| \(maxMagnitude)); mean loss Swift \(trained.meanLoss), NumPy \(numpy.meanLoss)")
            guard Double(maxDifference) <= tolerance * Double(max(1, maxMagnitude)) else {
                throw ValidationError("Swift and NumPy disagree at batch \(batch): max |difference| \(maxDifference) > tolerance; the comparison would not be fair")
            }
            let swiftRate = Double(epochs) / swiftSeconds
            results.append(BenchResult(
                benchmark: "training", figure: "agent training, batch \(batch) (\(n) samples, \(spec.summary))",
                value: swiftRate, unit: "epochs/s", limit: numpy.epochsPerSecond, limitUnit: "epochs/s",
                limitDescription: "NumPy \(numpyVersion), same SGD, \(numpyThreads) BLAS thread\(numpyThreads == 1 ? "" : "s")",
                direction: .higherIsBetter, goal: 1.0,
                details: ["batch": Double(batch), "samples": Double(n), "epochs": Double(epochs),
                          "swiftSeconds": swiftSeconds, "numpySeconds": numpy.seconds,
                          "maxParameterDifference": Double(maxDifference), "meanLossDifference": lossDifference,
                          "swiftMicrosecondsPerSample": swiftSeconds / Double(epochs * n) * 1e6,
                          "numpyMicrosecondsPerSample": numpy.seconds / Double(epochs * n) * 1e6]))
        }
        return results
    }

    private struct NumPyRun {
        var seconds: Double
        var epochsPerSecond: Double
        var meanLoss: Double
    }

    private func runNumPy(directory: URL, samples: Int, spec: ModelSpec, batch: Int) throws -> NumPyRun {
        let shape = spec.kind == .mlp
            ? ["--widths", ([spec.featureCount] + spec.hidden + [spec.outputCount]).map(String.init).joined(separator: ",")]
            : ["--features", "\(spec.featureCount)", "--classes", "\(spec.outputCount)"]
        let text = try runPython([script, "--dir", directory.path, "--samples", "\(samples)"] + shape
                                 + ["--epochs", "\(epochs)", "--batch", "\(batch)", "--lr", "\(learningRate)", "--repetitions", "\(repetitions)"])
        var values: [String: Double] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let value = Double(parts[1]) { values[String(parts[0])] = value }
        }
        guard let seconds = values["seconds"], let rate = values["epochs_per_second"], let loss = values["mean_loss"] else {
            throw ValidationError("unexpected output from \(script): \(text)")
        }
        return NumPyRun(seconds: seconds, epochsPerSecond: rate, meanLoss: loss)
    }

    private func runPython(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [python] + arguments
        var environment = ProcessInfo.processInfo.environment
        for name in ["OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"] { environment[name] = "\(numpyThreads)" }
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ValidationError("\(python) \(arguments.first ?? "") exited with status \(process.terminationStatus)")
        }
        return String(decoding: output, as: UTF8.self)
    }
}

/// Writes the values' bytes as they are in memory (little-endian on every platform Strata runs on).
private func writeRaw<T: BitwiseCopyable>(_ values: [T], to url: URL) throws {
    try values.withUnsafeBytes { try Data($0).write(to: url) }
}

private func readRaw<T: BitwiseCopyable>(_ url: URL) throws -> [T] {
    let data = try Data(contentsOf: url)
    let count = data.count / MemoryLayout<T>.stride
    return data.withUnsafeBytes { raw in (0..<count).map { raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.stride, as: T.self) } }
}
