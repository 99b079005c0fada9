import Foundation
import Testing
@testable import StrataCore

/// The training test vectors printed in docs/PROTOCOL.md §7.6, recomputed with the reference trainer and
/// compared with the document line by line: an independent client can check its shuffle and its SGD against
/// them, and they cannot drift from the code.
@Suite struct ProtocolTrainingVectorTests {
    static let documentPath = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("docs/PROTOCOL.md").path

    /// The lines of the fenced block after `<!-- vectors: NAME -->`.
    static func documentBlock(_ name: String) throws -> [String] {
        let lines = try String(contentsOfFile: documentPath, encoding: .utf8).components(separatedBy: "\n")
        let marker = try #require(lines.firstIndex { $0.trimmingCharacters(in: .whitespaces) == "<!-- vectors: \(name) -->" },
                                  "docs/PROTOCOL.md has no <!-- vectors: \(name) -->")
        #expect(lines[marker + 1].hasPrefix("```"))
        let end = try #require(lines[(marker + 2)...].firstIndex { $0.hasPrefix("```") })
        return Array(lines[(marker + 2)..<end])
    }

    static func hex(_ v: UInt64) -> String {
        let digits = String(v, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    static func decimals(_ values: [Float]) -> String { values.map { String(format: "%.5f", Double($0)) }.joined(separator: " ") }

    @Test func shuffleVectorsMatchTheDocument() throws {
        var lines: [String] = []
        var state: UInt64 = 0
        lines.append("splitmix64 outputs from state 0: " + (0..<3).map { _ in Self.hex(splitMix64(&state)) }.joined(separator: " "))
        for epoch: UInt64 in [0, 1] {
            lines.append("epoch seed (seed 43, epoch \(epoch)): \(Self.hex(deriveSeed(43, epoch)))")
        }
        var generator = SeededGenerator(seed: 43)
        lines.append("xoshiro256** seeded 43, first outputs: " + (0..<3).map { _ in Self.hex(generator.next()) }.joined(separator: " "))
        generator = SeededGenerator(seed: 43)
        lines.append("xoshiro256** seeded 43, below(10) five times: " + (0..<5).map { _ in String(generator.nextInt(below: 10)) }.joined(separator: " "))
        for count in [10, 5] {
            for epoch in [0, 1] {
                let order = Trainer.sampleOrder(count: count, seed: 43, epoch: epoch)
                lines.append("order n=\(count), seed 43, epoch \(epoch): " + order.map(String.init).joined(separator: " "))
            }
        }
        #expect(try Self.documentBlock("shuffle") == lines)
    }

    @Test func trainingVectorsMatchTheDocument() throws {
        let spec = ModelSpec(kind: .softmaxRegression, featureCount: 2, outputCount: 2)
        let base: [Float] = [0.5, -0.5, 0.25, 0, /* bias */ 0, 0.125]
        let train = Dataset(featureCount: 2, features: [1, 0, 0, 1, 1, 1, 2, -1, -1, 2], labels: [0, 1, 1, 0, 1])
        let evaluation = Dataset(featureCount: 2, features: [0.5, 0.5, 1, -1], labels: [1, 0])
        let config = TrainingConfig(learningRate: 0.5, batchSize: 2, epochs: 2, seed: 43, proximalMu: 0.5)
        let result = Trainer.train(spec: spec, parameters: base, data: train, config: config)
        let delta = zip(result.parameters, base).map { $0 - $1 }
        let before = Trainer.evaluate(spec: spec, parameters: base, data: evaluation)

        func batches(epoch: Int) -> String {
            let order = Trainer.sampleOrder(count: train.count, seed: config.seed, epoch: epoch)
            return stride(from: 0, to: order.count, by: config.batchSize).map { start in
                "[" + order[start..<min(start + config.batchSize, order.count)].map(String.init).joined(separator: " ") + "]"
            }.joined(separator: " ")
        }
        let lines = [
            "batches: epoch 0: \(batches(epoch: 0)); epoch 1: \(batches(epoch: 1))",
            "delta weight: " + Self.decimals(Array(delta[0..<4])),
            "delta bias: " + Self.decimals(Array(delta[4...])),
            "sampleCount: \(result.sampleCount)",
            "trainLoss: " + Self.decimals([result.meanLoss]),
            "evalSampleCount: \(before.sampleCount)",
            "evalLoss: " + Self.decimals([before.loss]),
            "evalAccuracy: " + Self.decimals([before.accuracy]),
        ]
        #expect(try Self.documentBlock("training") == lines)
    }
}
