#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import GRDB

/// Real PostgreSQL and MariaDB servers for the tests that read through ODBC.
///
/// Each server gets its own data directory under the temporary directory, a free loopback port and its
/// socket in that directory; nothing of the machine's own servers is used or touched. As root (CI), the
/// servers run as the `postgres` and `mysql` users that their Debian packages create (PostgreSQL refuses
/// root). `stop()` stops both and removes the directory; a watchdog process stops them too if the test
/// process dies without calling it.
///
/// Policy: a test that needs these servers FAILS when they cannot be started, on every machine, CI or not:
/// ODBC reading is part of the agent, and a skipped test would hide that it was never checked. The error
/// names what to install (`.ci/run` installs it).
public final class DatabaseServers: @unchecked Sendable {
    public let postgres: DatabaseServer
    public let mariadb: DatabaseServer
    let directory: String
    private let watchdog: Process?
    private var stopped = false
    private let lock = NSLock()

    /// The servers of the running test suite (set by the `.databaseServers` trait).
    @TaskLocal public static var current: DatabaseServers?

    public static let packages = "postgresql odbc-postgresql mariadb-server odbc-mariadb unixodbc-dev"

    private init(postgres: DatabaseServer, mariadb: DatabaseServer, directory: String, watchdog: Process?) {
        self.postgres = postgres
        self.mariadb = mariadb
        self.directory = directory
        self.watchdog = watchdog
    }

    /// Starts both servers (about 5 s), each with database `strata`, a superuser the helper uses and a reader
    /// user (`DatabaseServer.readerUser`) the agents use.
    public static func start() throws -> DatabaseServers {
        let directory = NSTemporaryDirectory() + "strata-db-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o755])
        var started: [DatabaseServer] = []
        do {
            let postgres = try DatabaseServer.startPostgres(in: directory + "/postgres")
            started.append(postgres)
            let mariadb = try DatabaseServer.startMariaDB(in: directory + "/mariadb")
            started.append(mariadb)
            let watchdog = try? startWatchdog(servers: started, directory: directory)
            return DatabaseServers(postgres: postgres, mariadb: mariadb, directory: directory, watchdog: watchdog)
        } catch {
            for server in started { server.stop() }
            if ProcessInfo.processInfo.environment["STRATA_KEEP_TEST_DIRS"] == nil {
                try? FileManager.default.removeItem(atPath: directory)
            }
            throw error
        }
    }

    /// Stops the servers (fast shutdown) and removes their directory. Idempotent.
    public func stop() {
        lock.lock()
        defer { lock.unlock() }
        guard !stopped else { return }
        stopped = true
        postgres.stop()
        mariadb.stop()
        if let watchdog, watchdog.isRunning { watchdog.terminate() }
        if ProcessInfo.processInfo.environment["STRATA_KEEP_TEST_DIRS"] == nil {
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    deinit { stop() }

    /// A shell that waits for this test process to end, then stops the servers and removes their directory:
    /// no server outlives a test run that crashed or was killed.
    private static func startWatchdog(servers: [DatabaseServer], directory: String) throws -> Process {
        let kills = servers.map { server in
            "kill -\(server.stopSignal) $(head -n 1 '\(server.pidFile)' 2>/dev/null) 2>/dev/null"
        }.joined(separator: "; ")
        let script = "while kill -0 \(getpid()) 2>/dev/null; do sleep 1; done; \(kills); sleep 10; rm -rf '\(directory)'"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }
}

/// Why a server could not be started or used, with what to do.
public struct DatabaseServerError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

public final class DatabaseServer: @unchecked Sendable {
    public enum Kind: String, Sendable { case postgres = "PostgreSQL", mariadb = "MariaDB" }

    public let kind: Kind
    public let port: Int
    /// The data directory's parent: socket, pid and log files.
    public let directory: String
    /// The database the tests use.
    public let database = "strata"
    /// The user agents connect as: SELECT on the tables it is granted, nothing else.
    public let readerUser = "strata_reader"
    /// Holds `;` and `}` on purpose: the connection string's escaping is part of what is tested.
    public let readerPassword = "r3ad;er}pw"
    /// A user with every privilege, for the tests that check the agent's session is read-only (tables are
    /// created over the local socket by the server's superuser).
    public let adminUser: String
    public let adminPassword = "strata-admin"
    /// The unixODBC driver name registered by the Debian package (odbcinst.ini).
    public let driver: String
    let process: Process
    let pidFile: String
    let stopSignal: String
    private let client: [String]
    private let log: String

    private init(kind: Kind, port: Int, directory: String, adminUser: String, driver: String, process: Process, pidFile: String,
                 stopSignal: String, client: [String], log: String) {
        self.kind = kind
        self.port = port
        self.directory = directory
        self.adminUser = adminUser
        self.driver = driver
        self.process = process
        self.pidFile = pidFile
        self.stopSignal = stopSignal
        self.client = client
        self.log = log
    }

    /// `DRIVER={…};SERVER=127.0.0.1;PORT=…;DATABASE=strata;UID=…`: no password (the agent adds it).
    public func connectionString(user: String? = nil, database: String? = nil, port: Int? = nil) -> String {
        "DRIVER={\(driver)};SERVER=127.0.0.1;PORT=\(port ?? self.port);DATABASE=\(database ?? self.database);UID=\(user ?? readerUser)"
    }

    /// Runs SQL as the superuser through the server's command-line client, in database `strata`.
    public func execute(_ sql: String, timeout: Double = 120) throws {
        let file = directory + "/script-\(UUID().uuidString.prefix(8)).sql"
        let preamble = kind == .mariadb ? "SET SESSION sql_mode = CONCAT(@@sql_mode, ',NO_BACKSLASH_ESCAPES');\n" : ""
        try (preamble + sql).write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let (status, output) = try Self.run(client[0], Array(client.dropFirst()) + (kind == .postgres ? ["-f", file] : []),
                                            stdin: kind == .mariadb ? file : nil, timeout: timeout)
        guard status == 0 else { throw DatabaseServerError("\(kind.rawValue) refused the script (\(status)): \(output.suffix(2000))") }
    }

    /// Runs a query through the server's own command-line client (psql, mariadb --quick), its rows written as
    /// text to /dev/null, and returns the seconds it took: what reading every row costs a C client of the
    /// server's protocol, the reference `strata-bench data` measures the agent's reading against.
    public func readThroughClient(_ sql: String, timeout: Double = 900) throws -> Double {
        let arguments = Array(client.dropFirst()) + (kind == .postgres ? ["-At", "-o", "/dev/null", "-c", sql] : ["--quick", "-N", "-B", "-e", sql])
        let process = Process()
        process.executableURL = URL(fileURLWithPath: client[0])
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        let errors = Pipe()
        process.standardError = errors
        process.standardInput = FileHandle.nullDevice
        let started = Date()
        try process.run()
        let deadline = started.addingTimeInterval(timeout)
        while process.isRunning {
            if Date() > deadline { process.terminate(); process.waitUntilExit(); throw DatabaseServerError("\(kind.rawValue) client timed out after \(timeout) s") }
            Thread.sleep(forTimeInterval: 0.01)
        }
        let seconds = Date().timeIntervalSince(started)
        guard process.terminationStatus == 0 else {
            let message = String(decoding: errors.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            throw DatabaseServerError("\(kind.rawValue) client failed (\(process.terminationStatus)): \(message.suffix(1000))")
        }
        return seconds
    }

    /// Creates `name` with the columns and rows of a SQLite table (INTEGER → BIGINT, REAL → DOUBLE, TEXT → TEXT,
    /// other declared types as they are; the primary key kept) and grants SELECT on it to the reader.
    public func copyTable(fromSQLite path: String, table: String = "samples", as name: String) throws {
        let queue = try DatabaseQueue(path: path)
        var script = ""
        try queue.read { db in
            let columns = try db.columns(in: table)
            let key = columns.filter { $0.primaryKeyIndex > 0 }.sorted { $0.primaryKeyIndex < $1.primaryKeyIndex }.map(\.name)
            var definitions = columns.map { "\(quote($0.name)) \(serverType($0.type))" }
            if !key.isEmpty { definitions.append("PRIMARY KEY (\(key.map(quote).joined(separator: ", ")))") }
            script += "DROP TABLE IF EXISTS \(quote(name));\nCREATE TABLE \(quote(name)) (\(definitions.joined(separator: ", ")));\n"
            let names = columns.map { quote($0.name) }.joined(separator: ", ")
            let rows = try Row.fetchAll(db, sql: "SELECT * FROM \(table.quotedDatabaseIdentifier) ORDER BY rowid")
            for start in stride(from: 0, to: rows.count, by: 200) {
                let values = rows[start..<min(start + 200, rows.count)].map { row in
                    "(" + (0..<row.count).map { literal(row[$0] as DatabaseValue) }.joined(separator: ", ") + ")"
                }
                script += "INSERT INTO \(quote(name)) (\(names)) VALUES\n\(values.joined(separator: ",\n"));\n"
            }
        }
        script += grant(name)
        try execute(script)
    }

    /// `GRANT SELECT ON table TO reader;`
    public func grant(_ table: String) -> String {
        switch kind {
        case .postgres: "GRANT SELECT ON \(quote(table)) TO \(readerUser);\n"
        case .mariadb: "GRANT SELECT ON \(database).\(quote(table)) TO '\(readerUser)'@'%';\n"
        }
    }

    public func quote(_ name: String) -> String {
        switch kind {
        case .postgres: "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""
        case .mariadb: "`" + name.replacingOccurrences(of: "`", with: "``") + "`"
        }
    }

    func serverType(_ declared: String) -> String {
        switch declared.uppercased() {
        case "INTEGER", "INT": "BIGINT"
        case "REAL", "DOUBLE", "FLOAT": kind == .postgres ? "DOUBLE PRECISION" : "DOUBLE"
        case "TEXT", "": "TEXT"
        default: declared
        }
    }

    func literal(_ value: DatabaseValue) -> String {
        switch value.storage {
        case .null: "NULL"
        case .int64(let v): "\(v)"
        case .double(let v): "\(v)"
        case .string(let s): "'" + s.replacingOccurrences(of: "'", with: "''") + "'"
        case .blob: "NULL"
        }
    }

    // MARK: Starting and stopping

    static var isRoot: Bool { geteuid() == 0 }

    /// The directory made usable by `user` when running as root (the servers drop root).
    static func makeDirectory(_ path: String, owner user: String?) throws {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        if let user {
            guard let entry = getpwnam(user) else {
                throw DatabaseServerError("running as root, the test servers run as user '\(user)', which does not exist: install \(DatabaseServers.packages)")
            }
            guard chown(path, entry.pointee.pw_uid, entry.pointee.pw_gid) == 0 else {
                throw DatabaseServerError("cannot give \(path) to user '\(user)': errno \(errno)")
            }
        }
    }

    static func find(_ names: [String], in directories: [String]) -> String? {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
        for directory in directories + path + ["/usr/sbin", "/usr/bin", "/sbin"] {
            for name in names where FileManager.default.isExecutableFile(atPath: directory + "/" + name) { return directory + "/" + name }
        }
        return nil
    }

    static func postgresBinDirectories() -> [String] {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init).sorted(by: >)
        return versions.map { "\(root)/\($0)/bin" }
    }

    static func startPostgres(in directory: String) throws -> DatabaseServer {
        let user = isRoot ? "postgres" : nil
        let bins = postgresBinDirectories()
        guard let initdb = find(["initdb"], in: bins), let postgres = find(["postgres"], in: bins), let psql = find(["psql"], in: bins) else {
            throw DatabaseServerError("PostgreSQL's initdb/postgres/psql not found (looked in \(bins + ["PATH"])): install \(DatabaseServers.packages), or run .ci/run")
        }
        try makeDirectory(directory, owner: user)
        let passwordFile = directory + "/superuser-password"
        try "strata-admin\n".write(toFile: passwordFile, atomically: true, encoding: .utf8)
        if let user, let entry = getpwnam(user) { chown(passwordFile, entry.pointee.pw_uid, entry.pointee.pw_gid) }
        let data = directory + "/data"
        let (status, output) = try run(initdb, ["-D", data, "-U", "postgres", "--pwfile=\(passwordFile)", "--auth-local=trust",
                                                "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync"], as: user, timeout: 120)
        guard status == 0 else { throw DatabaseServerError("initdb failed (\(status)): \(output.suffix(2000))") }
        var lastError = ""
        for _ in 0..<3 {
            let port = try freePort()
            let log = directory + "/postgres.log"
            let process = try launch(postgres, ["-D", data, "-p", "\(port)", "-k", directory, "-h", "127.0.0.1",
                                                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                                                "-c", "shared_buffers=32MB", "-c", "max_connections=40"], as: user, log: log)
            let server = DatabaseServer(kind: .postgres, port: port, directory: directory, adminUser: "postgres", driver: "PostgreSQL Unicode",
                                        process: process, pidFile: data + "/postmaster.pid", stopSignal: "INT",
                                        client: [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", directory, "-p", "\(port)", "-U", "postgres", "-d", "strata"],
                                        log: log)
            let ready = try waitUntilReady(process: process, timeout: 60) {
                try run(psql, ["-X", "-q", "-h", directory, "-p", "\(port)", "-U", "postgres", "-d", "postgres", "-c", "SELECT 1"], timeout: 10).status == 0
            }
            guard ready else {
                lastError = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                server.stop()
                continue
            }
            let setup = try run(psql, ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", directory, "-p", "\(port)", "-U", "postgres", "-d", "postgres",
                                       "-c", "CREATE DATABASE strata"], timeout: 60)
            guard setup.status == 0 else { server.stop(); throw DatabaseServerError("CREATE DATABASE failed: \(setup.output)") }
            try server.execute("CREATE ROLE \(server.readerUser) LOGIN PASSWORD '\(server.readerPassword)';\n")
            return server
        }
        throw DatabaseServerError("PostgreSQL did not start on a free loopback port in 3 attempts; its log:\n\(lastError.suffix(3000))")
    }

    static func startMariaDB(in directory: String) throws -> DatabaseServer {
        let user = isRoot ? "mysql" : nil
        guard let install = find(["mariadb-install-db", "mysql_install_db"], in: []), let server = find(["mariadbd", "mysqld"], in: []),
              let client = find(["mariadb", "mysql"], in: []) else {
            throw DatabaseServerError("MariaDB's mariadb-install-db/mariadbd/mariadb not found: install \(DatabaseServers.packages), or run .ci/run")
        }
        try makeDirectory(directory, owner: user)
        let data = directory + "/data"
        let socket = directory + "/mysql.sock"
        let (status, output) = try run(install, ["--no-defaults", "--datadir=\(data)", "--auth-root-authentication-method=normal",
                                                 "--skip-test-db", "--skip-name-resolve"] + (user.map { ["--user=\($0)"] } ?? []),
                                       timeout: 120)
        guard status == 0 else { throw DatabaseServerError("mariadb-install-db failed (\(status)): \(output.suffix(2000))") }
        var lastError = ""
        for _ in 0..<3 {
            let port = try freePort()
            let log = directory + "/error.log"
            let pidFile = directory + "/mariadb.pid"
            let process = try launch(server, ["--no-defaults", "--datadir=\(data)", "--port=\(port)", "--bind-address=127.0.0.1",
                                              "--socket=\(socket)", "--pid-file=\(pidFile)", "--skip-name-resolve", "--log-error=\(log)",
                                              "--innodb-flush-log-at-trx-commit=0", "--innodb-buffer-pool-size=32M", "--skip-log-bin",
                                              "--max-connections=40"] + (user.map { ["--user=\($0)"] } ?? []),
                                     as: nil, log: directory + "/mariadbd.out")
            let instance = DatabaseServer(kind: .mariadb, port: port, directory: directory, adminUser: "strata_admin", driver: "MariaDB Unicode",
                                          process: process, pidFile: pidFile, stopSignal: "TERM",
                                          client: [client, "--no-defaults", "--socket=\(socket)", "-u", "root", "strata"], log: log)
            let ready = try waitUntilReady(process: process, timeout: 60) {
                try run(client, ["--no-defaults", "--socket=\(socket)", "-u", "root", "-e", "SELECT 1"], timeout: 10).status == 0
            }
            guard ready else {
                lastError = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                instance.stop()
                continue
            }
            let setup = try run(client, ["--no-defaults", "--socket=\(socket)", "-u", "root", "-e",
                                         "CREATE DATABASE strata; CREATE USER '\(instance.readerUser)'@'%' IDENTIFIED BY '\(instance.readerPassword)'; "
                                         + "CREATE USER '\(instance.adminUser)'@'%' IDENTIFIED BY '\(instance.adminPassword)'; "
                                         + "GRANT ALL ON *.* TO '\(instance.adminUser)'@'%';"], timeout: 60)
            guard setup.status == 0 else { instance.stop(); throw DatabaseServerError("MariaDB setup failed: \(setup.output)") }
            return instance
        }
        throw DatabaseServerError("MariaDB did not start on a free loopback port in 3 attempts; its log:\n\(lastError.suffix(3000))")
    }

    /// Fast shutdown through the server's own pid (the launched process may be `runuser`), then waits.
    func stop() {
        if let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
           let pid = Int32(text.split(separator: "\n").first?.trimmingCharacters(in: .whitespaces) ?? "") {
            kill(pid, stopSignal == "INT" ? SIGINT : SIGTERM)
        } else if process.isRunning {
            process.terminate()
        }
        let deadline = Date().addingTimeInterval(30)
        while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    // MARK: Processes

    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw DatabaseServerError("socket() failed: errno \(errno)") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else { throw DatabaseServerError("bind() failed: errno \(errno)") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// The command, run as `user` through runuser when given (root only).
    static func command(_ executable: String, _ arguments: [String], as user: String?) -> (String, [String]) {
        guard let user else { return (executable, arguments) }
        return ("/usr/sbin/runuser", ["-u", user, "--", executable] + arguments)
    }

    static func launch(_ executable: String, _ arguments: [String], as user: String?, log: String) throws -> Process {
        let (path, args) = command(executable, arguments, as: user)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = args
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return process
    }

    @discardableResult
    static func run(_ executable: String, _ arguments: [String], as user: String? = nil, stdin: String? = nil,
                    timeout: Double) throws -> (status: Int32, output: String) {
        let (path, args) = command(executable, arguments, as: user)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = args
        let output = NSTemporaryDirectory() + "strata-db-run-\(UUID().uuidString.prefix(8)).log"
        _ = FileManager.default.createFile(atPath: output, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: output) }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: output))
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = try stdin.map { try FileHandle(forReadingFrom: URL(fileURLWithPath: $0)) } ?? FileHandle.nullDevice
        if user != nil { process.currentDirectoryURL = URL(fileURLWithPath: "/") }
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            if Date() > deadline {
                process.terminate()
                process.waitUntilExit()
                return (-1, "timed out after \(timeout) s: \(path) \(args.joined(separator: " "))")
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        try? handle.close()
        return (process.terminationStatus, (try? String(contentsOfFile: output, encoding: .utf8)) ?? "")
    }

    static func waitUntilReady(process: Process, timeout: Double, _ probe: () throws -> Bool) throws -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try probe() { return true }
            guard process.isRunning else { return false }
            Thread.sleep(forTimeInterval: 0.1)
        }
        return false
    }
}
