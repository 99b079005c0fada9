import ArgumentParser
import Foundation
import Logging
import StrataAgent
import StrataCore
import StrataData
import StrataConfiguration
import StrataLog
import StrataODBC
import StrataStore
import StrataTransport

extension NullPolicy: ExpressibleByArgument {}

@main
struct AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "strata-agent",
        abstract: "Train on a local SQLite database, or a server database through ODBC, and send model updates to a Strata coordinator over mutual TLS.",
        discussion: """
            The agent reads its rows at start (and every --refresh seconds) from --database (a SQLite file) or --odbc (PostgreSQL, MariaDB/MySQL, \
            SQL Server, Db2, Oracle: any driver registered with unixODBC): a table (--table) or any SQL query (--query). \
            Rows are split into train and test by --split-column ('train'/'test'), or deterministically by --test-fraction \
            when there is no such column. Only model updates leave the machine.

            Server databases (ODBC): --odbc takes a data source name defined in /etc/odbc.ini or ~/.odbc.ini \
            ("DSN=sales;UID=strata_agent") or a full connection string ("DRIVER={PostgreSQL Unicode};SERVER=db.example.org;\
            PORT=5432;DATABASE=sales;UID=strata_agent"; MariaDB: DRIVER={MariaDB Unicode}), never the password: the agent \
            refuses PWD= and PASSWORD= there, since every user of the machine can read a command line. The password comes \
            from --odbc-password-file (a file only the agent's user can read), else from the environment variable \
            STRATA_ODBC_PASSWORD; it is never logged, and scrubbed from the driver's messages. The session is made read-only \
            where the driver allows it (SQL_ATTR_ACCESS_MODE; PostgreSQL and MariaDB/MySQL also by a session setting), and \
            the database user needs SELECT on the table and nothing else. Numbers are read as text and parsed: integer, \
            real, numeric/decimal, boolean and numerals in text columns, like SQLite's; a date, time or binary column is \
            left out of an automatic choice (and the log says so) and refused when named: convert it in a --query. \
            --table takes a schema-qualified name (sales.visits); a table with a single integer primary key is read in its \
            order and that key numbers the rows in messages and in the split, otherwise rows are numbered in the server's \
            order. The query runs on a thread of its own. Errors name the fix: an unknown driver or DSN (with the drivers \
            and DSNs installed), an unreachable server, refused credentials, a missing database, table or column, a \
            missing SELECT privilege, a column type that cannot be used. docs/OPERATIONS.md, "Data sources", has odbc.ini \
            examples, read-only roles, and the memory a large table takes (about 10 bytes per value read).

            Features: --feature-columns in the order given (age,income,debt_ratio); otherwise, for a table, every \
            column except the label, the split column, the primary key and --exclude-columns that holds numbers: \
            columns of a numeric type (INTEGER, REAL, DECIMAL, NUMERIC, BOOLEAN, …), and text or untyped columns \
            whose every value is a number (what `sqlite3 .import` makes from a CSV); for a query, every result \
            column except the label, the split and --exclude-columns. Numbers stored as text (' 3.5 ', '1e3') and \
            true/false, yes/no, t/f (any case, as 1/0) are read as numbers; empty text counts as NULL. A column \
            chosen automatically that looks like a row identifier (named id, *_id, index; or distinct integers \
            1, 2, 3, … one per row) stops the agent: leave it out with --exclude-columns, or list the features. \
            The columns used, in order, with the kind of values found, are logged at start. Dates: \
            --date-columns signup,last_visit reads those columns (text such as 2024-03-01 or 2024-03-01T12:34:56+02:00, \
            or a DATE/TIMESTAMP column) as days since 1970-01-01 UTC, the time of day as a fraction; a value that is \
            not a date stops the agent, naming row and column.

            Labels: numbers are class indices 0, 1, … (softmax) or targets (linear); a label column holding text \
            such as 'approved'/'declined' keeps the text as class names, which need the federation's label \
            vocabulary (not sent by protocol v1 coordinators: the agent then stops and says so).

            NULLs (and empty text), by --null-policy: refuse (default) stops at the first one, naming row and \
            column; skip leaves the row out and counts it; impute keeps the row and fills a missing feature value \
            with the federation's mean (with a protocol v1 coordinator: this agent's own mean, with a warning). A \
            row without a label (or split value) is never imputed: refused under refuse, left out and counted \
            under skip and impute.

            Every update is written to --state before it is sent and deleted only when the coordinator acknowledges it \
            as committed, so a lost connection or a restart loses no work; the agent reconnects with exponential \
            backoff and jitter and sends what is still pending.

            Models: without --trainer-command the agent trains the federation's model with its built-in trainers: \
            softmax regression, linear regression and the multilayer perceptron (--model mlp at the coordinator); it \
            refuses a custom model (--model custom), which needs its owners' trainer. With --trainer-command CMD it \
            hands each task (any model, custom included) to a long-lived process that CMD starts, over the local \
            interface of docs/PROTOCOL.md §11 (in Python: pip install Clients/python). It sends that process the rows \
            it read after the federation's preprocessing; statistics, store-and-forward and heartbeats stay in the \
            agent. A trainer that fails, exits, hangs past --trainer-timeout or answers something malformed has its \
            task reported to the coordinator as failed (with the reason) and is restarted after 1 s, 2 s, 4 s, … up \
            to 60 s; the agent never waits on it for ever.

            A federation ends when the coordinator says so (its target, patience or limit). By default the agent then \
            waits for the coordinator's next federation and joins it (a service: systemd unit strata-agent@NAME); \
            --after-federation exit makes it exit 0 instead. Every federation has an id (its coordinator's state \
            database): updates stored for an earlier one are dropped, never sent to the next.

            Exit status: 0 when the coordinator ends the federation (with --after-federation exit); 1 on an error that retrying cannot fix (bad \
            data, refused certificate, incompatible model), with a message saying what to change.

            Examples:
              strata-agent --coordinator 127.0.0.1:7300 --cert Certs/out/agents/agent-01.crt \\
                --key Certs/out/agents/agent-01.key --ca Certs/out/ca.crt \\
                --database run/data/client-01.sqlite --state run/agent-01.state.sqlite
              strata-agent ... --odbc "DRIVER={PostgreSQL Unicode};SERVER=db;PORT=5432;DATABASE=clinic;UID=strata_agent" \\
                --odbc-password-file /etc/strata/db-password --table visits --label-column outcome --state agent.sqlite

            Heterogeneity emulation (--task-delay, --slowdown, --task-jitter) is for experiments and tests: it lets \
            fast and slow clients run on one machine. It delays training updates only, after they are saved; \
            evaluations are never delayed, since they measure the model and a round waits for every agent. The \
            agent above as a slow client (4× slower training, plus 1.5 s and up to 0.5 s at random per task):
              strata-agent ... --slowdown 4 --task-delay 1.5 --task-jitter 0.5
            """,
        version: BuildInfo.describe(program: "strata-agent", libraries: [
            ("OpenSSL", TLSContext.openSSLVersion), ("SQLite", SQLiteLibrary.version)]))

    @OptionGroup(title: "Settings file") var settings: SettingsOptions

    /// `--config FILE` is read before the flags are parsed (`CommandLineSources`): the file's settings come first.
    static func main() async {
        await main(CommandLineSources.ofThisProcess(program: "strata-agent").arguments)
    }

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

    @Option(name: .long, help: "The local SQLite database holding the training rows (or give --odbc).")
    var database: String?
    @Option(name: .long, help: ArgumentHelp(
        "A server database through unixODBC: a DSN (\"DSN=sales;UID=strata_agent\") or a connection string (\"DRIVER={PostgreSQL Unicode};SERVER=db;PORT=5432;DATABASE=sales;UID=strata_agent\"), without the password (or give --database).",
        valueName: "connection"))
    var odbc: String?
    @Option(name: .long, help: ArgumentHelp(
        "File holding the --odbc password (one line), readable only by the agent's user. Default: the environment variable STRATA_ODBC_PASSWORD, if set. Never logged.",
        valueName: "file"))
    var odbcPasswordFile: String?
    @Option(name: .long, help: "Table to read (ignored with --query); with --odbc it may be schema-qualified (sales.visits).")
    var table: String = "samples"
    @Option(name: .long, help: "SQL query returning the label, optional split, and feature columns.")
    var query: String?
    @Option(name: .long, help: "Label column: class indices 0, 1, … or targets; text labels need the federation's vocabulary.")
    var labelColumn: String = "label"
    @Option(name: .long, help: "Column holding 'train' or 'test'; if absent rows are split by --test-fraction.")
    var splitColumn: String = "split"
    @Option(name: .long, parsing: .upToNextOption, help: ArgumentHelp(
        "Feature columns in model order, comma-separated (age,income,debt_ratio) or repeated (default: every numeric column but label, split, primary key and --exclude-columns; see above).",
        valueName: "columns"))
    var featureColumns: [String] = []
    @Option(name: .long, parsing: .upToNextOption, help: ArgumentHelp(
        "Columns never taken as features when they are chosen automatically, comma-separated or repeated (e.g. an id column: customer_id,zip).",
        valueName: "columns"))
    var excludeColumns: [String] = []
    @Option(name: .long, parsing: .upToNextOption, help: ArgumentHelp(
        "Feature columns holding dates or timestamps (2024-03-01, 2024-03-01 12:34:56, ISO 8601 with an offset; a DATE or TIMESTAMP column), read as days since 1970-01-01 UTC, comma-separated or repeated.",
        valueName: "columns"))
    var dateColumns: [String] = []
    @Option(name: .long, help: ArgumentHelp(
        "What a NULL or empty value does: refuse (stop, naming row and column), skip (leave the row out), impute (fill a missing feature value with the federation's mean). A missing label is never imputed.",
        valueName: "refuse|skip|impute"))
    var nullPolicy: NullPolicy = .refuse
    @Option(name: .long, help: "Fraction of rows used for evaluation when there is no split column.")
    var testFraction: Double = 0.2
    @Option(name: .long, help: ArgumentHelp(
        "Read at most N rows, the first in row order (a table's key order, a query's ORDER BY): bounds the agent's memory on a large table; the log says when the source had more. Default: every row.",
        valueName: "n"))
    var maxRows: Int?
    @Option(name: .long, help: ArgumentHelp(
        "Read the data again every SECONDS (at least 1): when the rows changed, the agent logs the new counts and reconnects at once, so that the coordinator (stratactl client) sees them. One read at a time, off the session; a failed read keeps the rows read before. Default: read once, at start.",
        valueName: "seconds"))
    var refresh: Double?

    @Option(name: .long, help: "The agent's own state database (pending updates); keep it across restarts.")
    var state: String
    @Option(name: .long, help: "Give up after this many consecutive failed connection attempts (default: never).")
    var maxConnectAttempts: Int?
    @Option(name: .long, help: "Largest frame accepted from the coordinator, in bytes.")
    var maxFrameBytes: Int = 64 * 1024 * 1024

    @Option(name: .long, help: ArgumentHelp(
        "When the coordinator ends the federation: wait (keep running, join its next federation: a service) or exit (exit 0: one run).",
        valueName: "wait|exit"))
    var afterFederation: AfterFederation = .wait
    @Option(name: .long, help: ArgumentHelp(
        "While waiting for the next federation, try the coordinator every SECONDS.", valueName: "seconds"))
    var nextFederationPoll: Double = 30

    @Option(name: .long, help: ArgumentHelp(
        "Train and evaluate each task with this command's long-lived process (run by /bin/sh -c; requests on its stdin, answers on its stdout, docs/PROTOCOL.md §11), e.g. \"python3 Clients/python/examples/sklearn_mlp.py\". Default: the built-in trainers.",
        valueName: "command"))
    var trainerCommand: String?
    @Option(name: .long, help: ArgumentHelp(
        "With --trainer-command: the longest wait for any one answer of the trainer, in seconds; past it the trainer is killed, the task reported failed and the trainer restarted.",
        valueName: "seconds"))
    var trainerTimeout: Double = 600

    @OptionGroup(title: "Heterogeneity emulation (experiments)") var emulation: EmulationOptions
    @OptionGroup(title: "Logging") var log: LogOptions

    var endpoint: (host: String, port: Int)? {
        guard let colon = coordinator.lastIndex(of: ":"), let port = Int(coordinator[coordinator.index(after: colon)...]),
              (1...65535).contains(port) else { return nil }
        var host = String(coordinator[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return host.isEmpty ? nil : (host, port)
    }

    /// --feature-columns as typed: `age,income` or repeated, one list.
    var features: [String] { SampleOptions.columnList(featureColumns) }
    var excluded: [String] { SampleOptions.columnList(excludeColumns) }

    func validate() throws {
        switch (database, odbc) {
        case (nil, nil): throw ValidationError("give the data: --database FILE (a SQLite database) or --odbc CONNECTION (a server database through ODBC)")
        case (.some, .some): throw ValidationError("--database and --odbc both name the data: give one of them")
        default: break
        }
        if let odbc {
            guard !odbc.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw ValidationError("--odbc needs a data source name or a connection string, e.g. \"DSN=sales;UID=strata_agent\"")
            }
            let secrets = ODBCDataSource.secretKeys(in: odbc)
            guard secrets.isEmpty else {
                throw ValidationError("--odbc holds a password (\(secrets.joined(separator: ", "))=…), which every user of this machine can read on the command line: remove it, and put the password in a file given with --odbc-password-file (readable only by the agent's user) or in the environment variable STRATA_ODBC_PASSWORD")
            }
        } else if odbcPasswordFile != nil {
            throw ValidationError("--odbc-password-file is the password of an --odbc connection; a SQLite --database needs none")
        }
        guard endpoint != nil else { throw ValidationError("--coordinator must be HOST:PORT, e.g. 127.0.0.1:7300 or [::1]:7300") }
        if let refresh, !(refresh.isFinite && (1...86_400).contains(refresh)) {
            throw ValidationError("--refresh must be a number of seconds between 1 and 86400 (got \(refresh))")
        }
        if let maxRows, maxRows < 2 { throw ValidationError("--max-rows must be at least 2 (a training and an evaluation row)") }
        guard (0.01...0.9).contains(testFraction) else { throw ValidationError("--test-fraction must be between 0.01 and 0.9") }
        if let m = maxConnectAttempts, m < 1 { throw ValidationError("--max-connect-attempts must be at least 1") }
        if !features.isEmpty, !excluded.isEmpty {
            throw ValidationError("--feature-columns names the features exactly; --exclude-columns only narrows the automatic choice: give one of them")
        }
        if featureColumns.isEmpty != features.isEmpty || excludeColumns.isEmpty != excluded.isEmpty
            || dateColumns.isEmpty != SampleOptions.columnList(dateColumns).isEmpty {
            throw ValidationError("--feature-columns / --exclude-columns need column names, e.g. --feature-columns age,income")
        }
        guard maxFrameBytes >= 4096 else { throw ValidationError("--max-frame-bytes must be at least 4096") }
        guard nextFederationPoll.isFinite, (0.1...86_400).contains(nextFederationPoll) else {
            throw ValidationError("--next-federation-poll must be a number of seconds between 0.1 and 86400 (got \(nextFederationPoll))")
        }
        if let trainerCommand, trainerCommand.trimmingCharacters(in: .whitespaces).isEmpty {
            throw ValidationError("--trainer-command needs a command, e.g. --trainer-command \"python3 train.py\"")
        }
        guard trainerTimeout.isFinite, (1...86_400).contains(trainerTimeout) else {
            throw ValidationError("--trainer-timeout must be a number of seconds between 1 and 86400 (got \(trainerTimeout))")
        }
    }

    func run() async throws {
        if settings.printIfAsked(self, program: "strata-agent") { return }
        log.bootstrap()
        let logger = Logger(label: "strata.agent")
        let (host, port) = endpoint!
        let listed = features.isEmpty ? nil : features
        let selection: SampleSelection = query.map { .query(sql: $0, featureColumns: listed) } ?? .table(name: table, featureColumns: listed)
        let options = SampleOptions(selection: selection, labelColumn: labelColumn, splitColumn: splitColumn, testFraction: testFraction,
                                    excludedColumns: excluded, nullPolicy: nullPolicy, maxRows: maxRows,
                                    dateColumns: SampleOptions.columnList(dateColumns))
        let data: any DataSource
        if let odbc {
            let password: ODBCPassword?
            do {
                password = try ODBCPassword.resolve(file: odbcPasswordFile)
            } catch {
                logger.critical("\(error)")
                throw ExitCode(1)
            }
            if let file = odbcPasswordFile, let mode = (try? FileManager.default.attributesOfItem(atPath: file))?[.posixPermissions] as? Int,
               mode & 0o077 != 0 {
                logger.warning("the password file can be read by other users: chmod 600 it", metadata: ["file": "\(file)", "mode": "\(String(mode, radix: 8))"])
            }
            data = ODBCDataSource(connectionString: odbc, password: password, options: options)
        } else {
            data = SampleDataSource(databasePath: database!, options: options)
        }
        var config = AgentConfiguration(
            coordinatorHost: host, coordinatorPort: port,
            tls: TLSConfiguration(certificateChainFile: cert, privateKeyFile: key, trustRootsFile: ca),
            data: data, statePath: state)
        config.serverName = serverName
        config.maxConnectAttempts = maxConnectAttempts
        config.maxFrameBytes = maxFrameBytes
        config.refreshInterval = refresh.map { .milliseconds(Int64($0 * 1000)) }
        config.emulation = emulation.configuration(certificatePath: cert)
        config.afterFederation = afterFederation
        config.nextFederationPoll = .milliseconds(Int64(nextFederationPoll * 1000))
        config.trainerCommand = trainerCommand
        config.trainerTimeout = .milliseconds(Int64(trainerTimeout * 1000))
        // A trainer runs in a process group of its own, so a signal that stops the agent does not reach it:
        // kill it, then stop as the signal would have.
        let stopSignals = trainerCommand == nil ? [] : [SIGTERM, SIGINT].map { number -> any DispatchSourceSignal in
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                TrainerProcess.killAll()
                signal(number, SIG_DFL)
                raise(number)
            }
            source.resume()
            return source
        }
        defer { stopSignals.forEach { $0.cancel() } }
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

/// Delays this agent's training updates so that fast and slow clients (latency tiers) can be run on one machine.
struct EmulationOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Experiments and tests only: wait this many extra seconds before sending each training update (a slow link or a busy device).",
        valueName: "seconds"))
    var taskDelay: Double = 0
    @Option(name: .long, help: ArgumentHelp(
        "Experiments and tests only: make each training task take FACTOR times the time it really took (1: no slowdown).",
        valueName: "factor"))
    var slowdown: Double = 1
    @Option(name: .long, help: ArgumentHelp(
        "Experiments and tests only: add a uniform random delay in [0, SECONDS) to each training update.",
        valueName: "seconds"))
    var taskJitter: Double = 0
    @Option(name: .long, help: ArgumentHelp(
        "Seed of --task-jitter's random delays (0: derived from --cert, so agents started with the same flags differ).",
        valueName: "n"))
    var emulationSeed: UInt64 = 0

    static let maximumDelay: Double = 3600

    func validate() throws {
        for (flag, value) in [("--task-delay", taskDelay), ("--task-jitter", taskJitter)] {
            guard value.isFinite, (0...Self.maximumDelay).contains(value) else {
                throw ValidationError("\(flag) must be a number of seconds between 0 and \(Int(Self.maximumDelay)) (got \(value))")
            }
        }
        guard slowdown.isFinite, (1...1000).contains(slowdown) else {
            throw ValidationError("--slowdown must be a factor between 1 (no slowdown) and 1000 (got \(slowdown)); an agent cannot be made faster")
        }
    }

    func configuration(certificatePath: String) -> SlowdownEmulation {
        SlowdownEmulation(addedDelay: .seconds(taskDelay), slowdownFactor: slowdown, jitter: .seconds(taskJitter),
                          seed: emulationSeed != 0 ? emulationSeed : SlowdownEmulation.derivedSeed(from: certificatePath))
    }
}

extension AfterFederation: ExpressibleByArgument {}
