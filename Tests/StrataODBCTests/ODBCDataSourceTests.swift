import Foundation
import StrataCore
import StrataData
import StrataStore
import StrataTestServers
import Testing
@testable import StrataODBC

/// A temporary directory removed when the test ends.
final class TempDir {
    let path: String
    init() {
        path = NSTemporaryDirectory() + "strata-odbc-\(UUID().uuidString.prefix(8))"
        try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    func file(_ name: String) -> String { path + "/" + name }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}

/// The ODBC data source against real PostgreSQL and MariaDB servers (started for this suite; the suite fails
/// when they cannot be started): the same samples as SQLite from the same rows, every column type, every
/// typed error, a read-only session.
@Suite(.serialized, .databaseServers) struct ODBCDataSourceTests {
    var servers: DatabaseServers { get throws { try DatabaseServers.required() } }

    func source(_ server: DatabaseServer, _ selection: SampleSelection, user: String? = nil, password: String? = nil,
                connection: String? = nil, label: String = "label", nulls: NullPolicy = .refuse, split: String? = "split",
                excluded: [String] = [], dates: [String] = []) -> ODBCDataSource {
        ODBCDataSource(connectionString: connection ?? server.connectionString(user: user),
                       password: ODBCPassword(password ?? server.readerPassword),
                       options: SampleOptions(selection: selection, labelColumn: label, splitColumn: split, excludedColumns: excluded, nullPolicy: nulls,
                                              dateColumns: dates))
    }

    func error(_ body: () throws -> Any) -> DataSourceError? {
        do {
            _ = try body()
            return nil
        } catch let error as DataSourceError {
            return error
        } catch {
            Issue.record("not a DataSourceError: \(error)")
            return nil
        }
    }

    /// One Synthetic(1,1) client as strata-datagen writes it (60 REAL features, INTEGER label, a split column),
    /// copied into both servers: every source yields the same rows, bit for bit, in the same order.
    @Test func theSameRowsGiveTheSameSamplesAsSQLite() throws {
        let servers = try servers
        let dir = TempDir()
        let client = SyntheticGenerator.generate(SyntheticConfig(clientCount: 2, seed: 7), maxSamplesPerClient: 400)[0]
        let path = dir.file("client.sqlite")
        try SampleDatabaseWriter.write(path: path, train: client.train, test: client.test, integerLabels: true)
        let reference = try SampleDataSource(databasePath: path, selection: .table(name: "samples", featureColumns: nil)).load()
        let queryText = "SELECT x3, x1, label, split FROM samples WHERE x0 > -0.5 ORDER BY id"
        let referenceQuery = try SampleDataSource(databasePath: path, selection: .query(sql: queryText)).load()
        #expect(reference.train.count == client.train.count && reference.test.count == client.test.count)
        for server in [servers.postgres, servers.mariadb] {
            try server.copyTable(fromSQLite: path, as: "samples")
            let loaded = try source(server, .table(name: "samples", featureColumns: nil)).load()
            #expect(loaded.featureColumns == reference.featureColumns, "\(server.kind)")
            #expect(loaded.columns.map(\.kind) == reference.columns.map(\.kind), "\(server.kind)")
            #expect(loaded.train.features == reference.train.features, "\(server.kind)")
            #expect(loaded.train.labels == reference.train.labels, "\(server.kind)")
            #expect(loaded.test.features == reference.test.features, "\(server.kind)")
            #expect(loaded.test.labels == reference.test.labels, "\(server.kind)")
            #expect(loaded.labelKind == .numeric(.integer), "\(server.kind)")
            #expect(loaded.summaryLines.first { $0.hasPrefix("session read-only:") } != nil, "\(loaded.summaryLines)")

            let query = try source(server, .query(sql: queryText)).load()
            #expect(query.featureColumns == ["x3", "x1"])
            #expect(query.train.features == referenceQuery.train.features && query.test.features == referenceQuery.test.features, "\(server.kind)")
            #expect(query.train.labels == referenceQuery.train.labels, "\(server.kind)")

            // psqlodbc reads through a cursor unless the connection string chooses (below, Fetch=100): said at start.
            #expect(loaded.summaryLines.contains { $0.contains("server-side cursor (UseDeclareFetch=1;Fetch=10000 added") } == (server.kind == .postgres),
                    "\(loaded.summaryLines)")
            if server.kind == .postgres {
                // A large table's documented setting: psqlodbc fetches through a server-side cursor, 100 rows at a time.
                let cursor = try source(server, .table(name: "samples", featureColumns: nil),
                                        connection: server.connectionString() + ";UseDeclareFetch=1;Fetch=100").load()
                #expect(cursor.train.features == reference.train.features && cursor.test.labels == reference.test.labels)
            }
            // --max-rows: the first rows in key order, like SQLite's, and the source is said to have more.
            let half = reference.rows.read / 2
            var limitedOptions = SampleOptions(selection: .table(name: "samples", featureColumns: nil), splitColumn: nil, maxRows: half)
            let limited = try ODBCDataSource(connectionString: server.connectionString(), password: ODBCPassword(server.readerPassword),
                                             options: limitedOptions).load()
            let sqliteLimited = try SampleDataSource(databasePath: path, options: limitedOptions).load()
            #expect(limited.rows.read == half && limited.rows.stoppedAt == half, "\(limited.rows)")
            #expect(limited.train.features == sqliteLimited.train.features && limited.test.labels == sqliteLimited.test.labels, "\(server.kind)")
            limitedOptions.selection = .query(sql: "SELECT x0, label FROM samples ORDER BY id")
            let limitedQuery = try ODBCDataSource(connectionString: server.connectionString(), password: ODBCPassword(server.readerPassword),
                                                  options: limitedOptions).load()
            #expect(limitedQuery.rows.read == half && limitedQuery.rows.stoppedAt == half, "\(limitedQuery.rows)")
            // Without a split column both sources split by the same key: the integer primary key is SQLite's rowid.
            let keyed = try source(server, .table(name: "samples", featureColumns: ["x0", "x1"]), split: nil).load()
            let sqliteKeyed = try SampleDataSource(databasePath: path, selection: .table(name: "samples", featureColumns: ["x0", "x1"]), splitColumn: nil).load()
            #expect(keyed.test.features == sqliteKeyed.test.features && keyed.train.labels == sqliteKeyed.train.labels, "\(server.kind)")
        }
    }

    /// Integer, big integer, decimal, boolean, floating, text numerals, yes/no text, a date, free text, NULLs:
    /// each read as SQLite's path reads it, the date and the free text left out and said why.
    @Test func everyColumnTypeIsReadOrNamed() throws {
        let servers = try servers
        for server in [servers.postgres, servers.mariadb] {
            let big = server.kind == .postgres ? "BIGINT" : "BIGINT UNSIGNED"
            let double = server.kind == .postgres ? "DOUBLE PRECISION" : "DOUBLE"
            try server.execute("""
                CREATE TABLE kinds (
                    id INTEGER PRIMARY KEY, age INTEGER, visits \(big), income NUMERIC(12,3), member BOOLEAN, ratio \(double),
                    score VARCHAR(20), smoker VARCHAR(5), seen DATE, note TEXT, outcome VARCHAR(20), split VARCHAR(10));
                INSERT INTO kinds VALUES
                    (1, 34, 5, 52000.125, TRUE, 0.25, ' 3.5 ', 'yes', '2024-01-01', 'first', 'approved', 'train'),
                    (2, 41, 7, NULL, FALSE, 0.5, '1e3', 'no', '2024-02-01', 'second', 'declined', 'train'),
                    (3, 29, 9, 1234567.5, TRUE, -1.5, '-2', 'YES', '2024-03-01', NULL, 'approved', 'test'),
                    (4, 50, 11, 0.001, FALSE, 2, '12', 'No', NULL, 'x', 'declined', 'test');
                """ + server.grant("kinds"))
            let loaded = try source(server, .table(name: "kinds", featureColumns: nil), label: "outcome", nulls: .impute).load()
            #expect(loaded.featureColumns == ["age", "visits", "income", "member", "ratio", "score", "smoker"], "\(server.kind)")
            let kinds = Dictionary(uniqueKeysWithValues: loaded.columns.map { ($0.name, $0.kind) })
            #expect(kinds["age"] == .integer && kinds["visits"] == .integer && kinds["income"] == .real && kinds["ratio"] == .real, "\(loaded.columns)")
            #expect(kinds["score"] == .textNumerals && kinds["smoker"] == .boolean, "\(loaded.columns)")
            if server.kind == .postgres { #expect(kinds["member"] == .boolean, "\(loaded.columns)") }  // MariaDB's BOOLEAN is TINYINT(1): 0/1 integers
            #expect(loaded.skippedColumns.map(\.name) == ["seen", "note"], "\(loaded.skippedColumns)")
            #expect(loaded.skippedColumns[0].reason.contains("date"), "\(loaded.skippedColumns)")
            #expect(loaded.labelKind == .strings)
            #expect(loaded.trainLabelNames == ["approved", "declined"] && loaded.testLabelNames == ["approved", "declined"])
            #expect(loaded.rows.missingValuesKept == 1)
            // Row 1: 34, 5, 52000.125, true, 0.25, 3.5, yes.
            #expect(Array(loaded.train.features[0..<7]) == [34, 5, 52000.125, 1, 0.25, 3.5, 1], "\(server.kind)")
            #expect(Array(loaded.test.features[0..<7]) == [29, 9, 1234567.5, 1, -1.5, -2, 1], "\(server.kind)")
            #expect(loaded.train.features[7 + 2].isNaN)   // row 2's income, to impute

            // Named, the date is refused with its type; in a query too.
            let named = error { try source(server, .table(name: "kinds", featureColumns: ["age", "seen"]), label: "outcome").load() }
            guard case .unusableColumnType("seen", let type, "table 'kinds'")? = named else { Issue.record("\(String(describing: named))"); continue }
            #expect(type.lowercased().contains("date"))
            #expect(named?.description.contains("--exclude-columns seen") == true)
            let queried = error { try source(server, .query(sql: "SELECT age, seen, outcome AS label FROM kinds"), split: nil).load() }
            guard case .unusableColumnType("seen", _, "the query")? = queried else { Issue.record("\(String(describing: queried))"); continue }
            // NULLs under refuse name the row by the primary key.
            #expect(error { try source(server, .table(name: "kinds", featureColumns: ["income"]), label: "outcome").load() } == .nullValue(column: "income", row: 2))

            // --date-columns: the DATE column as days since 1970-01-01 (2024-01-01 is day 19723), in a table and in a
            // query, where a timestamp with a time zone reads as the same instant whatever the session's zone.
            let dated = try source(server, .table(name: "kinds", featureColumns: ["age", "seen"]), label: "outcome", nulls: .impute,
                                   dates: ["seen"]).load()
            #expect(dated.columns.map(\.kind) == [.integer, .date], "\(dated.columns)")
            #expect(dated.train.features == [34, 19723, 41, 19754], "\(server.kind)")
            #expect(dated.test.features[1] == 19783 && dated.test.features[3].isNaN, "\(server.kind)")
            let stamp = server.kind == .postgres ? "TIMESTAMPTZ '2024-03-01 12:00:00+00'" : "TIMESTAMP('2024-03-01 12:00:00')"
            let stamped = try source(server, .query(sql: "SELECT age, \(stamp) AS at, outcome AS label, split FROM kinds"), dates: ["at"]).load()
            #expect(stamped.train.features.count == 2 * stamped.train.count && stamped.columns.last?.kind == .date, "\(stamped.columns)")
            #expect(stride(from: 1, to: stamped.train.features.count, by: 2).allSatisfy { stamped.train.features[$0] == 19783.5 }, "\(stamped.train.features)")
        }
    }

    /// Values no float32 holds, NaN, an unsigned BIGINT beyond Int64: refused by name or read, never a trap.
    @Test func valuesAServerHoldsNeverTrap() throws {
        let servers = try servers
        let pg = servers.postgres
        try pg.execute("""
            CREATE TABLE odd (id INTEGER PRIMARY KEY, big NUMERIC, f DOUBLE PRECISION, label INTEGER, split TEXT);
            INSERT INTO odd VALUES (1, 1e40, 1, 0, 'train'), (2, 2, 'NaN', 1, 'test'), (3, 3, 3, 0, 'train'), (4, 4, 'Infinity', 1, 'test');
            """ + pg.grant("odd"))
        #expect(error { try source(pg, .table(name: "odd", featureColumns: ["big"])).load() }
                    == .valueOutOfRange(column: "big", row: 1, value: "1e+40"))
        #expect(error { try source(pg, .table(name: "odd", featureColumns: ["f"])).load() }
                    == .nonNumericValue(column: "f", row: 2, value: "nan"))
        #expect(error { try source(pg, .query(sql: "SELECT f, label, split FROM odd WHERE id <> 2 ORDER BY id")).load() }
                    == .valueOutOfRange(column: "f", row: 3, value: "inf"))
        let db = servers.mariadb
        try db.execute("""
            CREATE TABLE odd (id INTEGER PRIMARY KEY, huge BIGINT UNSIGNED, d DECIMAL(65,30), label INTEGER, split TEXT);
            INSERT INTO odd VALUES (1, 18446744073709551615, 12345678901234567890123456789012345.123456789012345678901234567891, 0, 'train'),
                                   (2, 0, -0.000000000000000000000000000001, 1, 'test'), (3, 1, 1, 0, 'train'), (4, 2, 2, 1, 'test');
            """ + db.grant("odd"))
        let loaded = try source(db, .table(name: "odd", featureColumns: ["huge", "d"])).load()
        let all = loaded.train.features + loaded.test.features
        #expect(all.contains(Float(18446744073709551615.0)) && all.contains(Float(1.2345678901234568e34)), "\(all)")
        #expect(loaded.columns.map(\.kind) == [.real, .real])
    }

    /// Every failure says what to fix; the password never appears.
    @Test func typedErrorsNameTheFix() throws {
        let servers = try servers
        let dir = TempDir()
        try SampleDatabaseWriter.write(path: dir.file("s.sqlite"), train: Dataset(featureCount: 2, features: [1, 2, 3, 4], labels: [0, 1]),
                                       test: Dataset(featureCount: 2, features: [5, 6], labels: [1]), integerLabels: true)
        let table = SampleSelection.table(name: "little", featureColumns: nil)
        for server in [servers.postgres, servers.mariadb] {
            try server.copyTable(fromSQLite: dir.file("s.sqlite"), as: "little")
            #expect(try source(server, table).load().train.count == 2)

            let wrong = "Wr0ng;pa}ss-\(server.kind.rawValue)"
            let refused = error { try source(server, table, password: wrong).load() }
            guard case .authenticationFailed(let connection, _)? = refused else { Issue.record("\(server.kind): \(String(describing: refused))"); continue }
            #expect(connection == server.connectionString())
            #expect(!refused!.description.contains(wrong) && !refused!.description.contains("Wr0ng") && !refused!.description.contains(server.readerPassword))
            #expect(refused!.description.contains("--odbc-password-file"))
            let unknownUser = error { try source(server, table, user: "nobody").load() }
            guard case .authenticationFailed? = unknownUser else { Issue.record("\(server.kind): \(String(describing: unknownUser))"); continue }

            let closed = try DatabaseServer.freePort()
            let unreachable = error { try source(server, table, connection: server.connectionString(port: closed)).load() }
            guard case .serverUnreachable? = unreachable else { Issue.record("\(server.kind): \(String(describing: unreachable))"); continue }

            let noDatabase = error { try source(server, table, connection: server.connectionString(database: "nosuch")).load() }
            switch noDatabase {
            case .databaseNotFound?: break
            case .authenticationFailed? where server.kind == .mariadb: break  // MariaDB denies a database the user has no grant on
            default: Issue.record("\(server.kind): \(String(describing: noDatabase))")
            }

            // MariaDB answers "denied" for a table that does not exist: the agent says both.
            let missing = error { try source(server, .table(name: "nosuch", featureColumns: nil)).load() }
            switch missing {
            case .tableNotFound("nosuch", let available)? where server.kind == .postgres: #expect(available.contains("little"), "\(available)")
            case .tableNotFoundOrDenied("nosuch", let available, _)? where server.kind == .mariadb: #expect(available.contains("little"), "\(available)")
            default: Issue.record("\(server.kind): \(String(describing: missing))")
            }
            // PostgreSQL folds names to lower case; a table typed in another case is found.
            #expect(try source(server, .table(name: "LITTLE", featureColumns: nil)).load().train.count == 2)

            #expect(error { try source(server, .table(name: "little", featureColumns: ["x0", "x9"])).load() }
                        == .columnNotFound(column: "x9", source: "table 'little'", available: ["id", "x0", "x1", "label", "split"]))
            let badQuery = error { try source(server, .query(sql: "SELECT x0, label FROM little WHERE"), split: nil).load() }
            guard case .queryFailed? = badQuery else { Issue.record("\(server.kind): \(String(describing: badQuery))"); continue }

            try server.execute("CREATE TABLE secret (x REAL, label INTEGER);")
            let denied = error { try source(server, .table(name: "secret", featureColumns: nil)).load() }
            switch denied {
            case .permissionDenied? where server.kind == .postgres: break
            case .tableNotFoundOrDenied? where server.kind == .mariadb: break  // MariaDB does not list it to this user
            default: Issue.record("\(server.kind): \(String(describing: denied))")
            }
            #expect(denied?.description.contains("GRANT SELECT") == true)
        }
        let unknownDriver = error { try source(servers.postgres, table, connection: "DRIVER={No Such Driver};SERVER=127.0.0.1;UID=x").load() }
        guard case .odbcDriverNotFound(_, _, let drivers, _)? = unknownDriver else { Issue.record("\(String(describing: unknownDriver))"); return }
        #expect(drivers.contains("PostgreSQL Unicode") && drivers.contains("MariaDB Unicode"), "\(drivers)")
        #expect(unknownDriver!.description.contains("odbc-postgresql"))
        let unknownDSN = error { try source(servers.postgres, table, connection: "DSN=strata-no-such-dsn;UID=x").load() }
        guard case .odbcDriverNotFound? = unknownDSN else { Issue.record("\(String(describing: unknownDSN))"); return }
    }

    /// The agent's session cannot write, even as a user who may: the access mode and the session setting.
    @Test func theSessionIsReadOnly() throws {
        let servers = try servers
        for server in [servers.postgres, servers.mariadb] {
            try server.execute("CREATE TABLE written (x INTEGER);")
            let admin = source(server, .table(name: "written", featureColumns: nil), user: server.adminUser, password: server.adminPassword)
            let session = try admin.connect()
            #expect(session.notes.contains { $0.contains("session read-only") && $0.contains("READ ONLY") }, "\(session.notes)")
            #expect(throws: ODBCCallError.self, "\(server.kind)") { try session.connection.execute("INSERT INTO written VALUES (1)") }
            do {
                try session.connection.execute("INSERT INTO written VALUES (1)")
            } catch let error as ODBCCallError {
                #expect(error.state == "25006", "\(server.kind): \(error)")
            }
        }
    }
}

/// What needs no server: the connection string's secrets, the password's escaping and silence, numbers as drivers render them.
@Suite struct ODBCConnectionStringTests {
    @Test func psqlodbcIsToldToStreamUnlessTheConnectionStringChooses() {
        #expect(ODBCDataSource.streamingAttributes(driver: "psqlodbcw.so", connectionString: "DSN=clinic") == "UseDeclareFetch=1;Fetch=10000")
        #expect(ODBCDataSource.streamingAttributes(driver: "PSQLODBCA.SO", connectionString: "DRIVER={PostgreSQL ANSI};SERVER=db") != nil)
        #expect(ODBCDataSource.streamingAttributes(driver: "psqlodbcw.so", connectionString: "DSN=clinic;usedeclarefetch=0") == nil)
        #expect(ODBCDataSource.streamingAttributes(driver: "psqlodbcw.so", connectionString: "DSN=clinic;B6=0") == nil)
        #expect(ODBCDataSource.streamingAttributes(driver: "libmaodbc.so", connectionString: "DSN=sales") == nil)
    }

    @Test func passwordsOnTheCommandLineAreFound() {
        #expect(ODBCDataSource.secretKeys(in: "DSN=sales;UID=agent").isEmpty)
        #expect(ODBCDataSource.secretKeys(in: "DSN=sales;UID=agent;PWD=x") == ["PWD"])
        #expect(ODBCDataSource.secretKeys(in: "DRIVER={PostgreSQL Unicode};password={a;b}};c};UID=u") == ["password"])
        #expect(ODBCDataSource.secretKeys(in: "DRIVER={x};Pwd = y") == ["Pwd"])
        #expect(ODBCDataSource.attributes(of: "DRIVER={a;b}}c};UID=u").map(\.value) == ["a;b}c", "u"])
    }

    @Test func thePasswordIsBracedAndNeverShown() throws {
        let source = ODBCDataSource(connectionString: "DSN=sales;UID=agent", password: ODBCPassword("p;w}d"),
                                    options: SampleOptions(selection: .table(name: "t", featureColumns: nil)))
        #expect(source.connectingString() == "DSN=sales;UID=agent;PWD={p;w}}d}")
        #expect(ODBCDataSource.attributes(of: source.connectingString()).last?.value == "p;w}d")
        #expect("\(source)" == "ODBC DSN=sales;UID=agent")
        var dumped = ""
        dump(source, to: &dumped)
        #expect(!dumped.contains("p;w"), "\(dumped)")
        #expect("\(String(describing: source.password))".contains("***"))

        let dir = TempDir()
        try "s3cret\n".write(toFile: dir.file("pw"), atomically: true, encoding: .utf8)
        #expect(try ODBCPassword.resolve(file: dir.file("pw"), environment: [:])?.value == "s3cret")
        #expect(try ODBCPassword.resolve(file: nil, environment: ["STRATA_ODBC_PASSWORD": "env"])?.value == "env")
        #expect(try ODBCPassword.resolve(file: dir.file("pw"), environment: ["STRATA_ODBC_PASSWORD": "env"])?.value == "s3cret")
        #expect(try ODBCPassword.resolve(file: nil, environment: [:]) == nil)
        try "".write(toFile: dir.file("empty"), atomically: true, encoding: .utf8)
        #expect(throws: DataSourceError.self) { try ODBCPassword.resolve(file: dir.file("empty"), environment: [:]) }
        #expect(throws: DataSourceError.self) { try ODBCPassword.resolve(file: dir.file("absent"), environment: [:]) }
    }

    /// The byte-level fast path gives exactly what the general path gives (bit for bit), on every form a
    /// driver writes and on random numerals of every length; what it does not take, it leaves to the general path.
    @Test func theFastNumeralPathAgreesWithTheGeneralOne() {
        func fast(_ text: String, integer: Bool) -> DatabaseCell? {
            Array(text.utf8).withUnsafeBytes { ColumnValues.numeralCell($0, integer: integer) }
        }
        func same(_ a: DatabaseCell?, _ b: DatabaseCell) -> Bool {
            switch (a, b) {
            case (.real(let x)?, .real(let y)): return x.bitPattern == y.bitPattern
            default: return a == b
            }
        }
        var generator = SeededGenerator(seed: 11)
        var cases = ["0", "-0", "+7", "3.", ".5", "-.5", "0.000001234", "1e3", "1E-3", "2.5e+10", "123456789012345678",
                     "1234567890123456789", "-9223372036854775808", "18446744073709551615", "0.1", "0.30000000000000004",
                     "1.7976931348623157e308", "1e400", "4.9e-324", "1e-400", "-4.993", "99999999999999999999.5"]
        let digits = Array("0123456789")
        for _ in 0..<20_000 {
            var text = Bool.random(using: &generator) ? "-" : ""
            text += String((0..<Int.random(in: 1...20, using: &generator)).map { _ in digits.randomElement(using: &generator)! })
            if Bool.random(using: &generator) {
                text += "." + String((0..<Int.random(in: 0...12, using: &generator)).map { _ in digits.randomElement(using: &generator)! })
            }
            if Int.random(in: 0..<4, using: &generator) == 0 { text += "e\(Int.random(in: -30...30, using: &generator))" }
            cases.append(text)
        }
        for text in cases {
            for integer in [true, false] {
                let general = BlockReader.number(text, integer: integer, truncated: false)
                #expect(same(fast(text, integer: integer), general), "\(text) integer=\(integer): \(String(describing: fast(text, integer: integer))) vs \(general)")
            }
        }
        for other in ["", " 1", "1 ", "NaN", "-Infinity", "1e", "e5", ".", "-", "1.2.3", "1,5", "0x10", "١٢"] {
            #expect(fast(other, integer: false) == nil, "\(other)")
        }
    }

    @Test func numbersAsDriversRenderThem() {
        #expect(BlockReader.number("42", integer: true, truncated: false) == .integer(42))
        #expect(BlockReader.number("18446744073709551615", integer: true, truncated: false) == .real(18446744073709551615))
        #expect(BlockReader.number(" 12.50 ", integer: false, truncated: false) == .real(12.5))
        #expect(BlockReader.number("-1.5e-3", integer: false, truncated: false) == .real(-0.0015))
        guard case .real(let nan) = BlockReader.number("NaN", integer: false, truncated: false), nan.isNaN else { Issue.record("NaN"); return }
        #expect(BlockReader.number("-Infinity", integer: false, truncated: false) == .real(-.infinity))
        #expect(BlockReader.number("$1,000.00", integer: false, truncated: false) == .text("$1,000.00"))
        #expect(BlockReader.number("0.1234567890123", integer: false, truncated: true) == .real(0.1234567890123))
        if case .text = BlockReader.number("123456789012", integer: false, truncated: true) {} else { Issue.record("a cut integer part is not a number") }
        #expect(ODBCDataSource.splitName("sales.visits") == ("sales", "visits"))
        #expect(ODBCDataSource.splitName("visits") == (nil, "visits"))
        #expect(ODBCDataSource.quoted("a\"b", quote: "\"") == "\"a\"\"b\"")
        #expect(ODBCDataSource.quoted("a`b", quote: "`") == "`a``b`")
    }
}
