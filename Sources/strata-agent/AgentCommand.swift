import ArgumentParser
import Foundation
import Logging
import StrataAgent
import StrataLog
import StrataStore
import StrataTransport

@main
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "strata-agent",
        abstract: "Train on a local SQLite database and send model updates to a Strata coordinator over mutual TLS.",
        discussion: """
            The agent reads its rows once from --database: a table (--table; features are every numeric column except \
            the label, the split column and the primary key, or --feature-columns) or any SQL query (--query). Rows are \
            split into train and test by --split-column ('train'/'test'), or deterministically by --test-fraction when \
            there is no such column. Only model updates leave the machine.

            Every update is written to --state before it is sent and deleted only when the coordinator acknowledges it \
            as committed, so a lost connection or a restart loses no work; the agent reconnects with exponential \
            backoff and jitter and sends what is still pending.

            Exit status: 0 when the coordinator ends the federation; 1 on an error that retrying cannot fix (bad \
            data, refused certificate, incompatible model), with a message saying what to change.

            Example:
              strata-agent --coordinator 127.0.0.1:7300 --cert Certs/out/agents/agent-01.crt \\
                --key Certs/out/agents/agent-01.key --ca Certs/out/ca.crt \\
                --database run/data/client-01.sqlite --state run/agent-01.state.sqlite
            """)

    @Option(name: .long, help: "Coordinator address as HOST:PORT.")
    var coordinator: String
    @Option(name: .long, help: "Name the coordinator's certificate must carry (default: the host of --coordinator).")
    var serverName: String?
    @Option(name: .long, help: "This agent's certificate (PEM), role agent; its CN is the client id.")
    var cert: String
    @Option(name: .long, help: "This agent's private key (PEM).")
    var key: String
    @Option(name: .long, help: "The federation CA certificate (PEM).")
    var ca: String

    @Option(name: .long, help: "The local SQLite database holding the training rows.")
    var database: String
    @Option(name: .long, help: "Table to read (ignored with --query).")
    var table: String = "samples"
    @Option(name: .long, help: "SQL query returning the label, optional split, and feature columns.")
    var query: String?
    @Option(name: .long, help: "Label column.")
    var labelColumn: String = "label"
    @Option(name: .long, help: "Column holding 'train' or 'test'; if absent rows are split by --test-fraction.")
    var splitColumn: String = "split"
    @Option(name: .long, parsing: .upToNextOption, help: "Feature columns (default: every numeric column but label, split and primary key).")
    var featureColumns: [String] = []
    @Option(name: .long, help: "Fraction of rows used for evaluation when there is no split column.")
    var testFraction: Double = 0.2

    @Option(name: .long, help: "The agent's own state database (pending updates); keep it across restarts.")
    var state: String
    @Option(name: .long, help: "Give up after this many consecutive failed connection attempts (default: never).")
    var maxConnectAttempts: Int?
    @Option(name: .long, help: "Largest frame accepted from the coordinator, in bytes.")
    var maxFrameBytes: Int = 64 * 1024 * 1024

    @OptionGroup(title: "Logging") var log: LogOptions

    var endpoint: (host: String, port: Int)? {
        guard let colon = coordinator.lastIndex(of: ":"), let port = Int(coordinator[coordinator.index(after: colon)...]),
              (1...65535).contains(port) else { return nil }
        var host = String(coordinator[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host.isEmpty ? nil : (host, port)
    }

    func validate() throws {
        guard endpoint != nil else { throw ValidationError("--coordinator must be HOST:PORT, e.g. 127.0.0.1:7300 or [::1]:7300") }
        guard (0.01...0.9).contains(testFraction) else { throw ValidationError("--test-fraction must be between 0.01 and 0.9") }
        if let m = maxConnectAttempts, m < 1 { throw ValidationError("--max-connect-attempts must be at least 1") }
        guard maxFrameBytes >= 4096 else { throw ValidationError("--max-frame-bytes must be at least 4096") }
    }

    func run() async throws {
        log.bootstrap()
        let logger = Logger(label: "strata.agent")
        let (host, port) = endpoint!
        let selection: SampleDataSource.Selection = query.map { .query(sql: $0) } ?? .table(name: table, featureColumns: featureColumns.isEmpty ? nil : featureColumns)
        var config = AgentConfiguration(
            coordinatorHost: host, coordinatorPort: port,
            tls: TLSConfiguration(certificateChainFile: cert, privateKeyFile: key, trustRootsFile: ca),
            data: SampleDataSource(databasePath: database, selection: selection, labelColumn: labelColumn,
                                   splitColumn: splitColumn, testFraction: testFraction),
            statePath: state)
        config.serverName = serverName
        config.maxConnectAttempts = maxConnectAttempts
        config.maxFrameBytes = maxFrameBytes
        do {
            let exit = try await AgentService(configuration: config, logger: logger).run()
            switch exit {
            case .finished(let message): logger.info("federation finished: \(message)")
            }
        } catch {
            logger.critical("\(error)")
            throw ExitCode(1)
        }
    }
}
