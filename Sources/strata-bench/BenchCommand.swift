import ArgumentParser

/// Benchmarks that measure a Strata figure and, in the same run, the limit it is compared with; each prints
/// the figure, the limit and their ratio (see docs/PERFORMANCE.md). Build with `-c release`.
@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "strata-bench",
        abstract: "Measure Strata against limits measured in the same run (memory bandwidth, AES-GCM, NumPy).",
        discussion: """
            Every benchmark prints lines of the form
              <figure>: <value> <unit> | limit <value> <unit> (<what the limit is>) | ratio <r> (goal <g>)
            and, with --json, one JSON object per benchmark on stdout. Run a release build:
              swift build -c release --product strata-bench && .build/release/strata-bench all
            """,
        subcommands: [FoldBench.self, IngestBench.self, BroadcastBench.self, ScaleBench.self, TrainingBench.self, DataSourceBench.self, LargeModelBench.self,
                      AllBench.self, DataReadChild.self]
    )
}

/// Runs every benchmark with its defaults, one after another.
struct AllBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "all", abstract: "Run every benchmark with its defaults.")

    @OptionGroup var output: BenchOutputOptions

    func run() async throws {
        var results: [BenchResult] = []
        results += try await FoldBench.parse([]).measure()
        results += try await IngestBench.parse([]).measure()
        results += try await BroadcastBench.parse([]).measure()
        results += try await ScaleBench.parse([]).measure()
        results += try await TrainingBench.parse([]).measure()
        output.report(results)
    }
}

/// A benchmark: measures, returns results; `run` prints them.
protocol Benchmark: AsyncParsableCommand {
    var output: BenchOutputOptions { get }
    func measure() async throws -> [BenchResult]
}

extension Benchmark {
    func run() async throws {
        output.report(try await measure())
    }
}
