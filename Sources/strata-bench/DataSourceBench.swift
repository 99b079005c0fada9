import ArgumentParser
import Foundation
import GRDB
import StrataTestServers

/// How fast an agent reads its rows from each kind of database, against the database's own command-line
/// client reading the same rows in the same run, and how much memory the rows cost the agent while it reads
/// them and while it trains on them.
struct DataSourceBench: Benchmark {
    static let configuration = CommandConfiguration(
        commandName: "data",
        abstract: "Rows/s an agent reads from SQLite, PostgreSQL and MariaDB vs each database's own client; agent RSS per million rows.",
        discussion: """
            Writes one table of --rows rows (an integer primary key, --features DOUBLE columns, an integer label) \
            into a SQLite file and into PostgreSQL and MariaDB servers started for the run on loopback (as the \
            ODBC tests start them; needs postgresql, odbc-postgresql, mariadb-server, odbc-mariadb), the same \
            values in every database. For each source it then times, alternately, (1) the database's own client \
            reading `SELECT * FROM big` to /dev/null (sqlite3, psql, mariadb --quick: the limit) and (2) a fresh \
            process reading the table the way strata-agent does (the same DataSource: every value parsed and \
            checked, the float32 rows built), which then standardises the rows and trains one epoch of softmax \
            regression on them, as the agent would. The child's peak RSS (VmHWM) after reading and after training \
            is compared with the rows' own size as float32 (rows × features × 4 bytes). The best time of \
            --repetitions counts. Goals: at least half the client's rate (the agent parses and checks every value \
            and builds the rows; the client only prints them), and a peak RSS of at most 3× the rows (by design the \
            agent holds them twice: typed columns and rows while reading; rows as read, kept to apply the \
            federation's preprocessing exactly, and standardised while training). Takes 5-10 minutes for a \
            million rows; run a release build.
            """)

    @OptionGroup var output: BenchOutputOptions

    @Option(help: "Rows of the table.")
    var rows = 1_000_000

    @Option(help: "Feature columns of the table.")
    var features = 60

    @Option(help: ArgumentHelp("Sources to measure, comma-separated.", valueName: "sqlite,postgres,mariadb"))
    var sources = "sqlite,postgres,mariadb"

    @Option(help: "Timed reads of each kind per source; the best counts.")
    var repetitions = 2

    var selected: [String] { sources.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces).lowercased() } }

    func validate() throws {
        guard (100...100_000_000).contains(rows) else { throw ValidationError("--rows must be between 100 and 100000000") }
        guard (1...1000).contains(features) else { throw ValidationError("--features must be between 1 and 1000") }
        guard repetitions >= 1 else { throw ValidationError("--repetitions must be at least 1") }
        let unknown = selected.filter { !["sqlite", "postgres", "mariadb"].contains($0) }
        guard unknown.isEmpty, !selected.isEmpty else { throw ValidationError("--sources takes sqlite, postgres and mariadb (got \(sources))") }
    }

    func measure() async throws -> [BenchResult] {
        let directory = NSTemporaryDirectory() + "strata-bench-data-\(ProcessInfo.processInfo.processIdentifier)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var results: [BenchResult] = []

        if selected.contains("sqlite") {
            let path = directory + "/big.sqlite"
            progress("data: writing \(rows) rows × \(features) features into SQLite")
            try Self.writeSQLite(path: path, sql: Self.tableSQL(.sqlite, rows: rows, features: features))
            guard let sqlite3 = Self.which("sqlite3") else { throw ValidationError("the sqlite3 command-line client is needed for the limit (Debian: apt-get install sqlite3)") }
            results += try compare(source: "SQLite", child: ["--database", path], password: nil) {
                try Self.time(sqlite3, [path, "SELECT * FROM big"])
            }
        }
        let servers = selected.contains("postgres") || selected.contains("mariadb") ? try DatabaseServers.start() : nil
        defer { servers?.stop() }
        for (name, server) in [("postgres", servers?.postgres), ("mariadb", servers?.mariadb)] {
            guard selected.contains(name), let server else { continue }
            progress("data: writing \(rows) rows × \(features) features into \(server.kind.rawValue)")
            try server.execute(Self.tableSQL(server.kind == .postgres ? .postgres : .mariadb, rows: rows, features: features) + server.grant("big"),
                               timeout: 3600)
            results += try compare(source: server.kind.rawValue, child: ["--odbc", server.connectionString()], password: server.readerPassword) {
                try server.readThroughClient("SELECT * FROM big")
            }
        }
        return results
    }

    /// Times the client and the agent's reader alternately; returns the read rate and the memory figures.
    private func compare(source: String, child arguments: [String], password: String?, client: () throws -> Double) throws -> [BenchResult] {
        var clientSeconds = Double.infinity
        var best: ChildRun?
        for round in 1...repetitions {
            progress("data: \(source), round \(round)/\(repetitions): the database's client, then the agent's reader")
            clientSeconds = min(clientSeconds, try client())
            let run = try runChild(arguments + ["--table", "big"], password: password)
            guard run.rows == rows else { throw ValidationError("the agent's reader read \(run.rows) rows of \(source), expected \(rows)") }
            if best.map({ run.readSeconds < $0.readSeconds }) ?? true { best = run }
        }
        let run = best!
        let matrixMiB = Double(rows * features * 4) / 1_048_576
        let label = "\(source), \(rows) rows × \(features)"
        progress("data: \(source): client \(format(clientSeconds)) s, agent \(format(run.readSeconds)) s; peak RSS \(format(run.readPeakMiB)) MiB reading, \(format(run.trainPeakMiB)) MiB training")
        let details: [String: Double] = ["rows": Double(rows), "features": Double(features), "clientSeconds": clientSeconds,
                                         "agentSeconds": run.readSeconds, "trainSeconds": run.trainSeconds,
                                         "startMiB": run.startMiB, "readPeakMiB": run.readPeakMiB, "trainPeakMiB": run.trainPeakMiB,
                                         "bytesPerValueReading": run.readPeakMiB * 1_048_576 / Double(rows * features),
                                         "bytesPerValueTraining": run.trainPeakMiB * 1_048_576 / Double(rows * features)]
        return [
            BenchResult(benchmark: "data", figure: "agent reads \(label)", value: Double(rows) / run.readSeconds, unit: "rows/s",
                        limit: Double(rows) / clientSeconds, limitUnit: "rows/s", limitDescription: "\(source)'s own client, SELECT * to /dev/null",
                        direction: .higherIsBetter, goal: 0.5, details: details),
            BenchResult(benchmark: "data", figure: "agent peak RSS reading \(label)", value: run.readPeakMiB, unit: "MiB",
                        limit: matrixMiB, limitUnit: "MiB", limitDescription: "the rows as float32", direction: .lowerIsBetter, goal: 3, details: details),
            BenchResult(benchmark: "data", figure: "agent peak RSS training on \(label)", value: run.trainPeakMiB, unit: "MiB",
                        limit: matrixMiB, limitUnit: "MiB", limitDescription: "the rows as float32", direction: .lowerIsBetter, goal: 3, details: details),
        ]
    }

    private struct ChildRun {
        var rows = 0
        var readSeconds = 0.0, trainSeconds = 0.0
        var startMiB = 0.0, readPeakMiB = 0.0, trainPeakMiB = 0.0
    }

    /// Runs `strata-bench data-read` (this executable) so that every measurement starts from a fresh heap.
    private func runChild(_ arguments: [String], password: String?) throws -> ChildRun {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
        process.arguments = ["data-read"] + arguments
        var environment = ProcessInfo.processInfo.environment
        environment["STRATA_ODBC_PASSWORD"] = password
        process.environment = environment
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw ValidationError("strata-bench data-read \(arguments.joined(separator: " ")) failed (\(process.terminationStatus))") }
        var values: [String: Double] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let value = Double(parts[1]) { values[String(parts[0])] = value }
        }
        guard let rows = values["rows"], let read = values["read_seconds"], let train = values["train_seconds"],
              let start = values["start_mib"], let readPeak = values["read_peak_mib"], let trainPeak = values["train_peak_mib"] else {
            throw ValidationError("unexpected output of strata-bench data-read: \(text)")
        }
        return ChildRun(rows: Int(rows), readSeconds: read, trainSeconds: train, startMiB: start, readPeakMiB: readPeak, trainPeakMiB: trainPeak)
    }

    enum Dialect { case sqlite, postgres, mariadb }

    /// `big(id, x0 … x{n-1}, label)`: x_j = ((id · p_j) mod 10007) / 1000 − 5, label = (7 · id) mod 10, the
    /// same values in every database, generated by the server itself.
    static func tableSQL(_ dialect: Dialect, rows: Int, features: Int) -> String {
        let id: String, real: String, source: String
        switch dialect {
        case .sqlite: (id, real) = ("g", "REAL")
        case .postgres: (id, real) = ("g::bigint", "DOUBLE PRECISION")
        case .mariadb: (id, real) = ("seq", "DOUBLE")
        }
        let columns = (0..<features).map { "x\($0) \(real)" }.joined(separator: ", ")
        let values = (0..<features).map { "((\(id) * \(1009 + 7919 * $0)) % 10007) / 1000.0 - 5.0" }.joined(separator: ", ")
        let select = "SELECT \(id), \(values), (\(id) * 7) % 10"
        switch dialect {
        case .sqlite:
            source = "WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < \(rows)) INSERT INTO big \(select) FROM s;"
        case .postgres:
            source = "INSERT INTO big \(select) FROM generate_series(1, \(rows)) AS g;\nANALYZE big;"
        case .mariadb:
            source = "INSERT INTO big \(select) FROM seq_1_to_\(rows);"
        }
        let key = dialect == .sqlite ? "INTEGER PRIMARY KEY" : "BIGINT PRIMARY KEY"
        return "DROP TABLE IF EXISTS big;\nCREATE TABLE big (id \(key), \(columns), label INTEGER);\n\(source)\n"
    }

    static func writeSQLite(path: String, sql: String) throws {
        let queue = try DatabaseQueue(path: path)
        try queue.write { try $0.execute(sql: sql) }
        try queue.close()
    }

    static func which(_ name: String) -> String? {
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(directory)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }

    /// Seconds `executable arguments` takes, its output discarded.
    static func time(_ executable: String, _ arguments: [String]) throws -> Double {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        let started = Date()
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw ValidationError("\(executable) failed (\(process.terminationStatus))") }
        return Date().timeIntervalSince(started)
    }
}
