import ArgumentParser

struct BroadcastBench: Benchmark {
    static let configuration = CommandConfiguration(commandName: "broadcast", abstract: "Model broadcast fan-out vs the encryption limit.")

    @OptionGroup var output: BenchOutputOptions

    func measure() async throws -> [BenchResult] {
        throw ValidationError("the broadcast benchmark is not written yet")
    }
}
