import ArgumentParser

struct ScaleBench: Benchmark {
    static let configuration = CommandConfiguration(commandName: "scale", abstract: "Thousands of concurrent mutual-TLS sessions: heartbeat latency, memory, idle CPU.")

    @OptionGroup var output: BenchOutputOptions

    func measure() async throws -> [BenchResult] {
        throw ValidationError("the scale benchmark is not written yet")
    }
}
