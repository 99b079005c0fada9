import ArgumentParser
import Foundation
import StrataAdmin
import StrataCore
import StrataTransport
import StrataWire

@main
struct Stratactl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stratactl",
        abstract: "Inspect and steer a running Strata coordinator: tiers, clients, health, model history.",
        discussion: """
            stratactl talks to the coordinator's admin API (default 127.0.0.1:7301, the agent port + 1) over mutual \
            TLS with an admin certificate (Certs/strata-pki.sh admin NAME). Connection settings come from flags, \
            else from STRATACTL_COORDINATOR, STRATACTL_CERT, STRATACTL_KEY, STRATACTL_CA, STRATACTL_SERVER_NAME, \
            else from the JSON config file (--config, STRATACTL_CONFIG, or ~/.config/strata/stratactl.json):
              {"coordinator": "127.0.0.1:7301", "cert": "admins/operator.crt", "key": "admins/operator.key", "ca": "ca.crt"}
            (relative paths in the file are relative to the file).

            Output is a human table; --json prints the API's JSON instead (one object; `watch --json`: one per line).

            Exit status: 0 success; 1 unexpected failure; 2 not found (client, version); 3 rejected (the action does \
            not apply now, e.g. pin to a tier that does not exist); 4 not authorized (TLS refused or certificate \
            revoked, not an admin certificate, or a read-only viewer certificate asking for an action); 5 unavailable (cannot connect, coordinator not ready); 6 local configuration (certificate \
            files, config file); 64 bad command line.

            Examples:
              stratactl status
              stratactl clients --state suspect
              stratactl pin agent-07 2
              stratactl evict agent-09 --reason "sends NaN updates"
              stratactl export-model best --out model.npz
              stratactl evaluations --limit 50
            """,
        version: BuildInfo.describe(program: "stratactl", libraries: [("OpenSSL", TLSContext.openSSLVersion)]),
        subcommands: [Status.self, Tiers.self, Clients.self, Client.self, Models.self, Evaluations.self, ExportModel.self,
                      Retier.self, Pin.self, Unpin.self, Evict.self, Admit.self, Audit.self, Watch.self])
}

struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: "Admin API address HOST:PORT (env STRATACTL_COORDINATOR; default 127.0.0.1:7301).")
    var coordinator: String?
    @Option(name: .long, help: "Admin certificate, PEM (env STRATACTL_CERT).")
    var cert: String?
    @Option(name: .long, help: "Its private key, PEM (env STRATACTL_KEY).")
    var key: String?
    @Option(name: .long, help: "The federation CA certificate, PEM (env STRATACTL_CA).")
    var ca: String?
    @Option(name: .long, help: "Name expected in the coordinator certificate (env STRATACTL_SERVER_NAME; default localhost).")
    var serverName: String?
    @Option(name: .long, help: "JSON config file (env STRATACTL_CONFIG; default ~/.config/strata/stratactl.json if present).")
    var config: String?
    @Flag(name: .long, help: "Print JSON instead of tables.")
    var json = false

    func validate() throws {
        if let coordinator {
            do { _ = try ConnectionSettings.parseAddress(coordinator) } catch { throw ValidationError("--coordinator: \(error)") }
        }
    }

    func settings() throws -> ConnectionSettings {
        try ConnectionSettings.resolve(
            flags: .init(coordinator: coordinator, cert: cert, key: key, ca: ca, serverName: serverName, config: config),
            environment: ProcessInfo.processInfo.environment)
    }
}

/// Every command: resolve the settings, call the API, print; typed failures become exit statuses.
protocol AdminCommand: AsyncParsableCommand {
    var connection: ConnectionOptions { get }
    func run(client: AdminClient) async throws
}

extension AdminCommand {
    func run() async throws {
        do {
            let client = try AdminClient(settings: try connection.settings())
            do {
                try await run(client: client)
            } catch {
                await client.shutdown()
                throw error
            }
            await client.shutdown()
        } catch let error as AdminClientError {
            FileHandle.standardError.write(Data("stratactl: \(error.message)\n".utf8))
            throw ExitCode(error.exitCode)
        }
    }

    func emit<T: Encodable>(_ value: T, human: () -> String) {
        if connection.json {
            print(JSONOutput.encode(value))
        } else {
            print(human(), terminator: "")
        }
    }
}

enum JSONOutput {
    static func encode<T: Encodable>(_ value: T, pretty: Bool = true) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(value)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }
}

func now() -> Double { Date().timeIntervalSince1970 }

func percentEncoded(_ text: String) -> String {
    text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? text
}

// MARK: - Reads

struct Status: AdminCommand {
    static let configuration = CommandConfiguration(abstract: "Mode, global version, latest accuracy, the best version and its score, tiers and clients by health state.")
    @OptionGroup var connection: ConnectionOptions

    func run(client: AdminClient) async throws {
        let status = try await client.get("/v1/status", as: StatusReport.self)
        emit(status) { Render.status(status) }
    }
}

struct Tiers: AdminCommand {
    static let configuration = CommandConfiguration(abstract: "Each tier's members, latency band, version, update rate and cross-tier weight.")
    @OptionGroup var connection: ConnectionOptions

    func run(client: AdminClient) async throws {
        let report = try await client.get("/v1/tiers", as: TiersReport.self)
        emit(report) { Render.tiers(report) }
    }
}

struct Clients: AdminCommand {
    static let configuration = CommandConfiguration(abstract: "Every known client: health, tier, latency, updates accepted and refused.")
    @OptionGroup var connection: ConnectionOptions
    @Option(name: .long, help: "Only clients in this tier (0 = fastest).")
    var tier: Int?
    @Option(name: .long, help: "Only clients in this state: healthy, suspect, lost, evicted or unknown.")
    var state: String?

    func validate() throws {
        if let state, !["healthy", "suspect", "lost", "evicted", "unknown"].contains(state) {
            throw ValidationError("--state must be healthy, suspect, lost, evicted or unknown")
        }
        if let tier, tier < 0 { throw ValidationError("--tier must be >= 0") }
    }

    func run(client: AdminClient) async throws {
        var query: [String] = []
        if let tier { query.append("tier=\(tier)") }
        if let state { query.append("state=\(state)") }
        let report = try await client.get("/v1/clients" + (query.isEmpty ? "" : "?" + query.joined(separator: "&")), as: ClientsReport.self)
        emit(report) { Render.clients(report.clients) }
    }
}

struct Client: AdminCommand {
    static let configuration = CommandConfiguration(
        abstract: "One client: latency history, tier moves with reasons, updates accepted and refused, health transitions, last error.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The client id (its certificate's CN).")
    var id: String
    @Option(name: .long, help: "Rows per history section.")
    var limit: Int = 20

    func validate() throws {
        guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be between 1 and 10000") }
    }

    func run(client: AdminClient) async throws {
        let detail = try await client.get("/v1/clients/\(percentEncoded(id))?limit=\(limit)", as: ClientDetail.self)
        emit(detail) { Render.client(detail) }
    }
}

struct Models: AdminCommand {
    static let configuration = CommandConfiguration(abstract: "Global and tier model versions, newest first, with provenance and accuracy.")
    @OptionGroup var connection: ConnectionOptions
    @Option(name: .long, help: "How many versions of each kind.")
    var limit: Int = 10

    func validate() throws {
        guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be between 1 and 10000") }
    }

    func run(client: AdminClient) async throws {
        let report = try await client.get("/v1/models?limit=\(limit)", as: ModelsReport.self)
        emit(report) { Render.models(report) }
    }
}

struct Evaluations: AdminCommand {
    static let configuration = CommandConfiguration(
        abstract: "The evaluation curve, newest first: each round's accuracy and loss, how many agents answered of how many were asked, whether it counted, and which made a new best version.",
        discussion: """
            A round counts for the target, the best version and --patience only when enough of the agents it asked \
            answered (the coordinator's --evaluation-quorum and --min-evaluation-clients); a partial round is shown \
            with `no (needs N)` and never counts.
            """)
    @OptionGroup var connection: ConnectionOptions
    @Option(name: .long, help: "How many rounds, newest first.")
    var limit: Int = 20

    func validate() throws {
        guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be between 1 and 10000") }
    }

    func run(client: AdminClient) async throws {
        let report = try await client.get("/v1/evaluations?limit=\(limit)", as: EvaluationsReport.self)
        emit(report) { Render.evaluations(report) }
    }
}

struct ExportModel: AdminCommand {
    static let configuration = CommandConfiguration(
        commandName: "export-model",
        abstract: "Write a global model version's parameters as a NumPy .npz archive, plus a JSON file with its shapes and provenance.",
        discussion: """
            The archive holds one float32 array per tensor: `weight` with shape (features, outputs) and `bias` with \
            shape (outputs,). Scores are x @ weight + bias; softmax models predict argmax. In Python:
              m = numpy.load("model.npz"); p = json.load(open("model.json"))["preprocessing"]
              c = numpy.array([f["center"] for f in p["features"]]); s = numpy.array([f["scale"] for f in p["features"]])
              scores = ((x - c) / s) @ m["weight"] + m["bias"]
            An MLP (model mlp) has the tensors layer1.weight, layer1.bias, layer2.weight, … and the metadata's \
            `architecture` (`mlp relu 60-32-32-10`): a = (x - c) / s; for each layer but the last, \
            a = relu(a @ W + b) (or tanh); scores = a @ W_last + b_last.
            The metadata file (default: the --out path with .json) records version, model kind, shapes, accuracy, \
            the preprocessing, the target metric and this version's score on it (from its latest counted evaluation), \
            and the best version.

            VERSION is `best` (the best version by the coordinator's target metric: kept whatever the retention, and \
            across restarts), `latest` (the newest committed version) or a number (`stratactl models` shows which \
            versions still have their parameters).
            """)
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: ArgumentHelp("best, latest, or a global model version number.", valueName: "version"))
    var version: String
    @Option(name: .long, help: "The .npz file to write.")
    var out: String
    @Option(name: .long, help: "Where to write the JSON metadata (default: --out with the extension .json).")
    var metadata: String?
    @Flag(name: .long, help: "Replace existing files.")
    var force = false

    func validate() throws {
        guard version == "best" || version == "latest" || (Int64(version).map { $0 >= 0 } ?? false) else {
            throw ValidationError("VERSION must be best, latest or a version number >= 0, got \(version)")
        }
        guard out.hasSuffix(".npz") else { throw ValidationError("--out must end in .npz (numpy.load reads it as an archive)") }
    }

    var metadataPath: String { metadata ?? String(out.dropLast(4)) + ".json" }

    func run(client: AdminClient) async throws {
        for path in [out, metadataPath] where !force && FileManager.default.fileExists(atPath: path) {
            throw AdminClientError(.configuration, "\(path) exists; pass --force to replace it")
        }
        let model = try await client.get("/v1/models/\(version)", as: ModelParameters.self)
        var arrays: [NumPyArchive.Array] = []
        for tensor in model.tensors {
            guard tensor.dtype == "float32", let bytes = Data(base64Encoded: tensor.data), bytes.count == tensor.shape.reduce(1, *) * 4 else {
                throw AdminClientError(.failed, "tensor \(tensor.name) in the answer does not match its shape \(tensor.shape)")
            }
            let values = bytes.withUnsafeBytes { raw in
                (0..<bytes.count / 4).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
            }
            arrays.append(NumPyArchive.Array(name: tensor.name, shape: tensor.shape, values: values))
        }
        let meta = ExportMetadata(version: model.version, model: model.model, features: model.features, outputs: model.outputs,
                                  createdAt: model.createdAt, accuracy: model.accuracy,
                                  tensors: model.tensors.map { .init(name: $0.name, shape: $0.shape, dtype: $0.dtype) },
                                  file: (out as NSString).lastPathComponent, preprocessing: model.preprocessing,
                                  requested: version, metric: model.metric, score: model.score,
                                  answered: model.answered, asked: model.asked, isBest: model.best.map { $0.version == model.version },
                                  best: model.best, architecture: model.architecture)
        do {
            try NumPyArchive.npz(arrays).write(to: URL(fileURLWithPath: out))
            try Data((JSONOutput.encode(meta) + "\n").utf8).write(to: URL(fileURLWithPath: metadataPath))
        } catch {
            throw AdminClientError(.configuration, "cannot write the export: \(error)")
        }
        emit(meta) {
            var score = ""
            if let metric = model.metric, let value = model.score {
                score = "; its counted evaluation: \(metric) \(Display.number(value))" + (model.answered.map { a in model.asked.map { " (\(a)/\($0) agents answered)" } ?? "" } ?? "")
            }
            let best = meta.isBest == true ? " (the best version)" : model.best.map { " (the best is version \($0.version))" } ?? ""
            return "wrote \(out) (" + model.tensors.map { "\($0.name) \($0.shape.map(String.init).joined(separator: "x"))" }.joined(separator: ", ")
                + ") and \(metadataPath): version \(model.version)\(best)" + (model.accuracy.map { ", accuracy \(Display.number($0))" } ?? "") + "\(score)\n"
        }
    }
}

struct ExportMetadata: Codable {
    struct Tensor: Codable {
        var name: String
        var shape: [Int]
        var dtype: String
    }
    var version: Int64
    var model: String
    var features: Int
    var outputs: Int
    var createdAt: Double
    var accuracy: Double?
    var tensors: [Tensor]
    var file: String
    /// Apply to a row before the model: ((x, or fill when missing) − center) / scale; class k is labels[k].
    /// The object strata-coordinator --preprocessing-file reads (this whole file is accepted too).
    var preprocessing: Preprocessing?
    /// What was asked for: best, latest or the number.
    var requested: String
    /// The target metric and this version's score on it (its latest counted evaluation), with that round's answered / asked agents.
    var metric: String?
    var score: Double?
    var answered: Int?
    var asked: Int?
    var isBest: Bool?
    /// The best version when exported.
    var best: BestModelReport?
    /// An MLP's layers and activation (`mlp relu 60-32-32-10`).
    var architecture: String?
}

struct Audit: AdminCommand {
    static let configuration = CommandConfiguration(abstract: "The audit log: every admin action that changes something, who asked, when, and the result.")
    @OptionGroup var connection: ConnectionOptions
    @Option(name: .long, help: "How many entries, newest first.")
    var limit: Int = 20

    func validate() throws {
        guard (1...10_000).contains(limit) else { throw ValidationError("--limit must be between 1 and 10000") }
    }

    func run(client: AdminClient) async throws {
        let report = try await client.get("/v1/audit?limit=\(limit)", as: AuditReport.self)
        emit(report) { Render.audit(report.entries) }
    }
}

// MARK: - Actions

struct Retier: AdminCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-plan the tiers from the current latency profiles now (no hysteresis); pinned clients stay.")
    @OptionGroup var connection: ConnectionOptions

    func run(client: AdminClient) async throws {
        let result = try await client.post("/v1/retier", as: ActionResult.self)
        emit(result) { Render.action(result) }
    }
}

struct Pin: AdminCommand {
    static let configuration = CommandConfiguration(abstract: "Pin a client to a tier (0 = fastest); re-tiering leaves it there.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The client id.")
    var id: String
    @Argument(help: "The tier (0 = fastest).")
    var tier: Int

    func validate() throws {
        guard tier >= 0 else { throw ValidationError("TIER must be >= 0") }
    }

    func run(client: AdminClient) async throws {
        let result = try await client.post("/v1/clients/\(percentEncoded(id))/pin", body: PinRequest(tier: tier), as: ActionResult.self)
        emit(result) { Render.action(result) }
    }
}

struct Unpin: AdminCommand {
    static let configuration = CommandConfiguration(abstract: "Remove a client's pin; re-tiering may move it again.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The client id.")
    var id: String

    func run(client: AdminClient) async throws {
        let result = try await client.post("/v1/clients/\(percentEncoded(id))/unpin", as: ActionResult.self)
        emit(result) { Render.action(result) }
    }
}

struct Evict: AdminCommand {
    static let configuration = CommandConfiguration(
        abstract: "Close a client's session and refuse its certificate until `stratactl admit ID`.",
        discussion: "Updates it sent before the eviction and that were already accepted stay in the model.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The client id.")
    var id: String
    @Option(name: .long, help: "Why (recorded in the audit log and sent to the agent).")
    var reason: String

    func validate() throws {
        guard !reason.trimmingCharacters(in: .whitespaces).isEmpty else { throw ValidationError("--reason must not be empty") }
    }

    func run(client: AdminClient) async throws {
        let result = try await client.post("/v1/clients/\(percentEncoded(id))/evict", body: EvictRequest(reason: reason), as: ActionResult.self)
        emit(result) { Render.action(result) }
    }
}

struct Admit: AdminCommand {
    static let configuration = CommandConfiguration(abstract: "Re-admit an evicted client: its certificate is accepted again.")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "The client id.")
    var id: String

    func run(client: AdminClient) async throws {
        let result = try await client.post("/v1/clients/\(percentEncoded(id))/admit", as: ActionResult.self)
        emit(result) { Render.action(result) }
    }
}

// MARK: - Watch

struct Watch: AdminCommand {
    static let configuration = CommandConfiguration(
        abstract: "A live view of tiers, versions, accuracy and client states, refreshed until interrupted (Ctrl-C).")
    @OptionGroup var connection: ConnectionOptions
    @Option(name: .long, help: "Seconds between refreshes.")
    var interval: Double = 2
    @Option(name: .long, help: "Stop after this many refreshes (default: until interrupted).")
    var count: Int?

    func validate() throws {
        guard interval >= 0.1, interval.isFinite else { throw ValidationError("--interval must be at least 0.1 seconds") }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
    }

    struct Frame: Codable {
        var at: Double
        var status: StatusReport
        var clients: [ClientSummary]
    }

    func run(client: AdminClient) async throws {
        let interactive = isatty(STDOUT_FILENO) == 1 && !connection.json
        var refreshes = 0
        while count.map({ refreshes < $0 }) ?? true {
            if refreshes > 0 { try await Task.sleep(for: .milliseconds(Int64(interval * 1000))) }
            refreshes += 1
            let frame: Frame
            do {
                frame = Frame(at: now(), status: try await client.get("/v1/status", as: StatusReport.self),
                              clients: try await client.get("/v1/clients", as: ClientsReport.self).clients)
            } catch let error as AdminClientError where error.kind == .unavailable && count == nil {
                // A restarting coordinator: keep watching.
                FileHandle.standardError.write(Data("stratactl: \(error.message); retrying\n".utf8))
                continue
            }
            if connection.json {
                print(JSONOutput.encode(frame, pretty: false))
            } else {
                if interactive { print("\u{1B}[H\u{1B}[2J", terminator: "") }
                print(Render.watch(frame.status, clients: frame.clients, interval: interval), terminator: "")
            }
            fflush(nil)
        }
    }
}
