import ArgumentParser

struct TrainingBench: Benchmark {
    static let configuration = CommandConfiguration(commandName: "training", abstract: "Agent training epochs per second vs NumPy.")

    @OptionGroup var output: BenchOutputOptions

    func measure() async throws -> [BenchResult] {
        throw ValidationError("the training benchmark is not written yet")
    }
}
