import ArgumentParser
import Foundation
import StrataCore
import StrataStore

/// `strata-datagen generate`, the default subcommand: `strata-datagen --out DIR …` runs it.
struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Write synthetic non-IID client databases (FedProx Synthetic(alpha, beta)) for a Strata federation.",
        discussion: """
            Writes one SQLite database per client, DIR/client-01.sqlite … DIR/client-NN.sqlite, each with a table \
            `samples(id, x0 … x59, label, split)` where split is 'train' or 'test' (80/20 per client by default). \
            The draw is deterministic for --seed. Afterwards a softmax regression is trained centrally on the pooled \
            training rows (SGD, the federation's default hyperparameters) and its accuracy on the pooled test rows is \
            printed: the upper reference a federation on this data can be compared with. DIR/manifest.json records \
            the parameters, per-client sizes and that reference.

            `generate` is the default subcommand: `strata-datagen --out DIR …` and `strata-datagen generate --out DIR …` \
            are the same.

            Example: strata-datagen --out run/data --clients 10 --alpha 1 --beta 1 --seed 1
            """)

    @Option(name: .long, help: "Directory to write the client databases into (created if missing).")
    var out: String

    @Option(name: .long, help: "Number of client databases.")
    var clients: Int = 10

    @Option(name: .long, help: "Alpha: how much client models differ (standard deviation of u_k).")
    var alpha: Double = 1

    @Option(name: .long, help: "Beta: how much client feature distributions differ (standard deviation of B_k).")
    var beta: Double = 1

    @Flag(name: .long, help: "Synthetic-IID: one shared model and feature distribution for every client.")
    var iid = false

    @Option(name: .long, help: "Random seed; the same seed writes the same data.")
    var seed: UInt64 = 1

    @Option(name: .long, help: "Feature columns per row.")
    var features: Int = 60

    @Option(name: .long, help: "Number of classes (labels 0..<classes).")
    var classes: Int = 10

    @Option(name: .long, help: "Fraction of each client's rows marked 'test'.")
    var testFraction: Double = 0.2

    @Option(name: .long, help: ArgumentHelp(
        "Each client's test set holds this many times its held-out rows (fresh draws from the client's distribution join them).",
        discussion: "The training rows stay the same; more test rows measure accuracy finer (10 clients hold ~220 test rows by default)."))
    var testMultiple: Int = 1

    @Option(name: .long, help: "Cap on rows per client (the lognormal size distribution has a long tail).")
    var maxSamples: Int = 5000

    @Option(name: .long, help: "Local epochs of the central reference training.")
    var referenceEpochs: Int = 20

    @Option(name: .long, help: "Learning rate of the central reference training.")
    var referenceLearningRate: Float = 0.01

    func validate() throws {
        guard clients >= 1, clients <= 10_000 else { throw ValidationError("--clients must be between 1 and 10000") }
        guard features >= 1, features <= 1900 else { throw ValidationError("--features must be between 1 and 1900 (SQLite's column limit)") }
        guard classes >= 2 else { throw ValidationError("--classes must be at least 2") }
        guard (0.01...0.9).contains(testFraction) else { throw ValidationError("--test-fraction must be between 0.01 and 0.9") }
        guard (1...100).contains(testMultiple) else { throw ValidationError("--test-multiple must be between 1 and 100") }
        guard maxSamples >= SyntheticGenerator.minimumSamplesPerClient else {
            throw ValidationError("--max-samples must be at least \(SyntheticGenerator.minimumSamplesPerClient)")
        }
        guard alpha >= 0, beta >= 0, alpha.isFinite, beta.isFinite else { throw ValidationError("--alpha and --beta must be finite and >= 0") }
    }

    func run() throws {
        let config = SyntheticConfig(alpha: alpha, beta: beta, iid: iid, clientCount: clients, featureCount: features,
                                     classCount: classes, testFraction: testFraction, testMultiple: testMultiple, seed: seed)
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let data = SyntheticGenerator.generate(config, maxSamplesPerClient: maxSamples)
        let width = max(2, String(clients).count)
        var entries: [[String: Any]] = []
        for client in data {
            let name = "client-\(String(repeating: "0", count: max(0, width - String(client.clientIndex + 1).count)))\(client.clientIndex + 1).sqlite"
            let path = (out as NSString).appendingPathComponent(name)
            try SampleDatabaseWriter.write(path: path, train: client.train, test: client.test, integerLabels: true)
            print("wrote \(path): \(client.train.count) train, \(client.test.count) test rows")
            entries.append(["file": name, "train": client.train.count, "test": client.test.count])
        }
        let pooledTrain = Dataset.concatenating(data.map(\.train), featureCount: features)
        let pooledTest = Dataset.concatenating(data.map(\.test), featureCount: features)
        let spec = ModelSpec(kind: .softmaxRegression, featureCount: features, outputCount: classes)
        print("training the central reference on \(pooledTrain.count) rows (\(referenceEpochs) epochs)…")
        let trained = Trainer.train(spec: spec, parameters: spec.initialParameters(), data: pooledTrain,
                                    config: TrainingConfig(learningRate: referenceLearningRate, batchSize: 10, epochs: referenceEpochs, seed: seed))
        let evaluation = Trainer.evaluate(spec: spec, parameters: trained.parameters, data: pooledTest)
        print(String(format: "central reference accuracy: %.4f on %d pooled test rows", evaluation.accuracy, pooledTest.count))
        let manifest: [String: Any] = [
            "generator": iid ? "synthetic-iid" : "synthetic", "alpha": alpha, "beta": beta, "seed": seed,
            "features": features, "classes": classes, "testFraction": testFraction, "testMultiple": testMultiple, "clients": entries,
            "referenceAccuracy": Double(evaluation.accuracy), "referenceEpochs": referenceEpochs,
            "referenceLearningRate": Double(referenceLearningRate),
        ]
        let json = try JSONSerialization.data(withJSONObject: manifest, options: [.prettyPrinted, .sortedKeys])
        try json.write(to: URL(fileURLWithPath: (out as NSString).appendingPathComponent("manifest.json")))
    }
}
