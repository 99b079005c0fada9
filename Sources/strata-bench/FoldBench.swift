import ArgumentParser

struct FoldBench: Benchmark {
    static let configuration = CommandConfiguration(commandName: "fold", abstract: "Aggregation fold vs memory bandwidth.")

    @OptionGroup var output: BenchOutputOptions

    func measure() async throws -> [BenchResult] {
        throw ValidationError("the fold benchmark is not written yet")
    }
}
