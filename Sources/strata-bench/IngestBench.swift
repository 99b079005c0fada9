import ArgumentParser

struct IngestBench: Benchmark {
    static let configuration = CommandConfiguration(commandName: "ingest", abstract: "Coordinator CPU per update over mutual TLS vs AES-GCM decrypt.")

    @OptionGroup var output: BenchOutputOptions

    func measure() async throws -> [BenchResult] {
        throw ValidationError("the ingest benchmark is not written yet")
    }
}
