import ArgumentParser
import Foundation
import StrataAgent
import StrataCore
import StrataData
import StrataODBC
import StrataStore

/// One measurement of `strata-bench data`, in a process of its own so that its peak RSS is the reading's
/// and the training's alone: reads a table as strata-agent does, keeps the rows as read next to a
/// standardised copy (what the agent holds once the federation's preprocessing arrives) and trains one epoch.
/// Prints `key value` lines.
struct DataReadChild: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "data-read", abstract: "One measurement of `strata-bench data` (run by it).", shouldDisplay: false)

    @Option var database: String?
    @Option var odbc: String?
    @Option var table = "big"

    func run() async throws {
        let options = SampleOptions(selection: .table(name: table, featureColumns: nil), splitColumn: nil)
        let source: any DataSource
        if let odbc {
            source = ODBCDataSource(connectionString: odbc, password: try ODBCPassword.resolve(file: nil), options: options)
        } else if let database {
            source = SampleDataSource(databasePath: database, options: options)
        } else {
            throw ValidationError("give --database or --odbc")
        }
        let start = ProcessMemory.residentMiB
        let clock = ContinuousClock()
        let readStart = clock.now
        let loaded = try await DataSourceLoader.load(source)   // as the agent reads: on its own thread, then the heap trimmed
        let readSeconds = (clock.now - readStart).seconds
        let readPeak = ProcessMemory.peakMiB

        let standardized = loaded.standardized(by: Standardization(statistics: loaded.featureStatistics()))
        let spec = ModelSpec(kind: .softmaxRegression, featureCount: loaded.featureColumns.count, outputCount: 10)
        let trainStart = clock.now
        let result = Trainer.train(spec: spec, parameters: spec.initialParameters(), data: standardized.train,
                                   config: TrainingConfig(learningRate: 0.01, batchSize: 10, epochs: 1, seed: 1))
        let trainSeconds = (clock.now - trainStart).seconds
        let trainPeak = ProcessMemory.peakMiB
        withExtendedLifetime(loaded) {}
        print("rows \(loaded.rows.read)")
        print("read_seconds \(readSeconds)")
        print("train_seconds \(trainSeconds)")
        print("train_loss \(result.meanLoss)")
        print("start_mib \(start)")
        print("read_peak_mib \(readPeak)")
        print("train_peak_mib \(trainPeak)")
    }
}

/// This process's memory as Linux reports it in /proc/self/status.
enum ProcessMemory {
    /// VmRSS, in MiB (0 where /proc is missing).
    static var residentMiB: Double { field("VmRSS:") }
    /// VmHWM: the largest RSS so far, in MiB.
    static var peakMiB: Double { field("VmHWM:") }

    private static func field(_ name: String) -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix(name) }),
              let kilobytes = Double(line.dropFirst(name.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") else { return 0 }
        return kilobytes / 1024
    }
}
