import Foundation
import GRDB
import StrataData

/// Imports a CSV file into a table of a SQLite database, in the layout `SampleDataSource` reads: one column
/// per header name, declared INTEGER, REAL, BOOLEAN or TEXT (`CSVTypeInference`), empty fields NULL, no key
/// column added (the agent numbers rows by rowid).
///
/// Reads the file twice, a chunk at a time: once to infer the types (nothing is written if that fails), once
/// to insert every row in one transaction (an error leaves the database as it was; a database the import
/// created is removed again).
public struct CSVImport: Sendable {
    /// What to do when the table already exists.
    public enum ExistingTable: Sendable, Hashable {
        case refuse
        /// Drop it and create it anew, in the import's transaction.
        case replace
        /// Insert into it (its columns must be the file's, by name; its declared types decide). Creates the
        /// table when it does not exist.
        case append
    }

    public struct Progress: Sendable, Hashable {
        public enum Phase: Sendable, Hashable {
            /// The first pass: inferring types.
            case reading
            case inserting
        }
        public var phase: Phase
        public var rows: Int
        /// Known while inserting: the rows the first pass counted.
        public var totalRows: Int?
        public var bytes: Int64
        public var totalBytes: Int64
    }

    public var file: String
    public var database: String
    public var table: String
    public var delimiter: UInt8
    /// `--type COL=TYPE`: columns whose type is given rather than inferred.
    public var types: [String: CSVColumnType]
    public var existingTable: ExistingTable
    /// Infer and report without opening the database for writing.
    public var dryRun: Bool
    public var chunkSize: Int

    public init(file: String, database: String, table: String, delimiter: UInt8 = UInt8(ascii: ","), types: [String: CSVColumnType] = [:],
                existingTable: ExistingTable = .refuse, dryRun: Bool = false, chunkSize: Int = 1 << 20) {
        self.file = file
        self.database = database
        self.table = table
        self.delimiter = delimiter
        self.types = types
        self.existingTable = existingTable
        self.dryRun = dryRun
        self.chunkSize = max(1, chunkSize)
    }

    /// Runs the import; `progress` is called after every chunk of the file.
    public func run(progress: (Progress) -> Void = { _ in }) throws(CSVImportError) -> CSVImportReport {
        do {
            return try importFile(progress: progress)
        } catch let error as CSVImportError {
            throw error
        } catch {
            throw Self.describe(error, database: database)
        }
    }

    /// The table already in the database: its name as the database spells it, and its columns.
    private struct ExistingColumns {
        var table: String
        var columns: [(name: String, declaredType: String)]
    }

    private func importFile(progress: (Progress) -> Void) throws -> CSVImportReport {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory) else { throw CSVImportError.fileNotFound(path: file) }
        guard !isDirectory.boolValue else { throw CSVImportError.unreadableFile(path: file, detail: "it is a directory") }
        let totalBytes = ((try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? NSNumber)?.int64Value ?? 0

        // An existing database is looked at before the file is read: a table in the way, or an append's
        // column types, are known before the first pass.
        let databaseExisted = FileManager.default.fileExists(atPath: database)
        var queue: DatabaseQueue?
        var existing: ExistingColumns?
        if databaseExisted {
            var configuration = Configuration()
            configuration.readonly = dryRun
            configuration.label = "strata.csv-import"
            let opened = try Self.open(database, configuration: configuration)
            queue = opened
            existing = try opened.read { db in try Self.existingColumns(db, table: table) }
        }
        if let existing {
            switch existingTable {
            case .refuse: throw CSVImportError.tableExists(table: existing.table, database: database)
            case .append where !types.isEmpty: throw CSVImportError.typeWithAppend(table: existing.table)
            case .append, .replace: break
            }
        }

        // First pass: the header, the types, the row count.
        var inference: CSVTypeInference?
        try readFile(phase: .reading, totalRows: nil, totalBytes: totalBytes, progress: progress) { header throws in
            var given = types.mapValues { (type: $0, source: CSVColumnSummary.TypeSource.forced) }
            if let existing, existingTable == .append {
                given = try Self.tableTypes(existing, header: header)
            }
            inference = try CSVTypeInference(header: header, types: given)
        } row: { record in
            try inference?.add(record)
        }
        guard let inference else { throw CSVImportError.emptyFile(path: file) }
        guard inference.rowCount > 0 else { throw CSVImportError.noRows(path: file) }

        let outcome: CSVImportReport.Outcome
        if dryRun {
            outcome = .dryRun
        } else {
            let writer = try queue ?? Self.open(database, configuration: Configuration())
            do {
                outcome = try insert(into: writer, inference: inference, replacing: existing != nil && existingTable == .replace,
                                     creating: existing == nil, totalBytes: totalBytes, progress: progress)
            } catch {
                if !databaseExisted {
                    // Leave no empty database behind where there was none.
                    try? writer.close()
                    for suffix in ["", "-journal", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: database + suffix) }
                }
                throw error
            }
        }
        // An append goes to the table as the database spells its name (the agent's --table must match it).
        let reported = existingTable == .append ? existing?.table ?? table : table
        return CSVImportReport(file: file, database: database, table: reported, rows: inference.rowCount,
                               columns: inference.summaries, outcome: outcome)
    }

    /// Second pass: every row, in one transaction.
    private func insert(into writer: DatabaseQueue, inference: CSVTypeInference, replacing: Bool, creating: Bool,
                        totalBytes: Int64, progress: (Progress) -> Void) throws -> CSVImportReport.Outcome {
        let names = inference.columnNames
        let types = inference.types
        let quotedTable = table.sqlIdentifier
        return try writer.write { db in
            if replacing { try db.execute(sql: "DROP TABLE \(quotedTable)") }
            if replacing || creating {
                let columns = zip(names, types).map { "\($0.sqlIdentifier) \($1.declaredType)" }
                try db.execute(sql: "CREATE TABLE \(quotedTable) (\(columns.joined(separator: ", ")))")
            }
            let placeholders = Array(repeating: "?", count: names.count).joined(separator: ", ")
            let statement = try db.makeStatement(sql: "INSERT INTO \(quotedTable) (\(names.map(\.sqlIdentifier).joined(separator: ", "))) VALUES (\(placeholders))")
            var values = [DatabaseValue](repeating: .null, count: names.count)
            var headerSeen = false
            var inserted = 0
            try readFile(phase: .inserting, totalRows: inference.rowCount, totalBytes: totalBytes, progress: progress) { header in
                // The file changed since the first pass.
                guard header.map(ColumnValues.trimmed) == names else {
                    throw CSVImportError.unreadableFile(path: file, detail: "its header line changed while it was imported")
                }
                headerSeen = true
            } row: { record in
                for i in values.indices {
                    guard let cell = types[i].cell(record.fields[i]) else {
                        throw CSVImportError.valueDoesNotFit(line: record.line, column: names[i], value: ColumnValues.trimmed(record.fields[i]),
                                                             type: types[i], because: "the file changed since its types were inferred")
                    }
                    values[i] = Self.databaseValue(cell)
                }
                try statement.execute(arguments: StatementArguments(values))
                inserted += 1
            }
            guard headerSeen else { throw CSVImportError.emptyFile(path: file) }
            guard inserted == inference.rowCount else {
                throw CSVImportError.unreadableFile(path: file, detail: "it changed while it was imported: \(inference.rowCount) rows when the types were inferred, \(inserted) when inserted")
            }
            if replacing { return .replaced }
            if creating { return .created }
            let total = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM \(quotedTable)") ?? 0
            return .appended(rowsInTable: total)
        }
    }

    /// Streams the file through a `CSVReader`: `header` once, then `row` for every row.
    private func readFile(phase: Progress.Phase, totalRows: Int?, totalBytes: Int64, progress: (Progress) -> Void,
                          header: ([String]) throws -> Void, row: (CSVRecord) throws -> Void) throws {
        let handle: FileHandle
        do {
            handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: file))
        } catch {
            throw CSVImportError.unreadableFile(path: file, detail: Self.reason(error))
        }
        defer { try? handle.close() }
        var reader = CSVReader(delimiter: delimiter)
        var rows = 0
        var bytes: Int64 = 0
        var headerDelivered = false
        func deliver(_ records: [CSVRecord]) throws {
            if !headerDelivered, let names = reader.header {
                headerDelivered = true
                try header(names)
            }
            for record in records { try row(record) }
            rows += records.count
        }
        while true {
            let data: Data?
            do {
                data = try handle.read(upToCount: chunkSize)
            } catch {
                throw CSVImportError.unreadableFile(path: file, detail: Self.reason(error))
            }
            guard let data, !data.isEmpty else { break }
            bytes += Int64(data.count)
            try deliver(try reader.read([UInt8](data)))
            progress(Progress(phase: phase, rows: rows, totalRows: totalRows, bytes: bytes, totalBytes: totalBytes))
        }
        try deliver(try reader.finish())
    }

    private static func databaseValue(_ cell: DatabaseCell) -> DatabaseValue {
        switch cell {
        case .null, .blob: .null
        case .integer(let v): v.databaseValue
        case .real(let v): v.databaseValue
        case .text(let s): s.databaseValue
        }
    }

    /// The table named `table` (SQLite compares names ignoring ASCII case) and its columns, or nil.
    private static func existingColumns(_ db: Database, table: String) throws -> ExistingColumns? {
        guard let name = try String.fetchOne(db, sql: "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name = ? COLLATE NOCASE",
                                             arguments: [table]) else { return nil }
        let columns = try db.tableColumns(name).map { (name: $0.name, declaredType: $0.declaredType) }
        return ExistingColumns(table: name, columns: columns)
    }

    /// An append's types: the table's declarations, for a file with the table's columns.
    private static func tableTypes(_ existing: ExistingColumns, header: [String]) throws -> [String: (type: CSVColumnType, source: CSVColumnSummary.TypeSource)] {
        let names = header.map(ColumnValues.trimmed)
        let tableNames = existing.columns.map(\.name)
        let onlyInFile = names.filter { CSVTypeInference.index(of: $0, in: tableNames) == nil }
        let onlyInTable = tableNames.filter { CSVTypeInference.index(of: $0, in: names) == nil }
        guard onlyInFile.isEmpty, onlyInTable.isEmpty else {
            throw CSVImportError.columnsDiffer(table: existing.table, onlyInFile: onlyInFile, onlyInTable: onlyInTable)
        }
        var types: [String: (type: CSVColumnType, source: CSVColumnSummary.TypeSource)] = [:]
        for name in names {
            guard let index = CSVTypeInference.index(of: name, in: tableNames) else { continue }
            let declared = existing.columns[index].declaredType
            types[name] = (CSVColumnType(declaredType: declared), .table(declaredType: declared.isEmpty ? "untyped" : declared))
        }
        return types
    }

    private static func open(_ path: String, configuration: Configuration) throws -> DatabaseQueue {
        do {
            return try DatabaseQueue(path: path, configuration: configuration)
        } catch {
            throw describe(error, database: path)
        }
    }

    /// A GRDB error as a message that names the database and what to do.
    static func describe(_ error: any Error, database: String) -> CSVImportError {
        guard let error = error as? DatabaseError else { return .databaseFailed(path: database, detail: reason(error)) }
        let detail = error.message ?? "\(error.resultCode)"
        switch error.resultCode {
        case .SQLITE_NOTADB, .SQLITE_CORRUPT: return .notADatabase(path: database, detail: detail)
        case .SQLITE_CANTOPEN, .SQLITE_READONLY, .SQLITE_PERM, .SQLITE_AUTH: return .cannotOpenDatabase(path: database, detail: detail)
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            return .databaseFailed(path: database, detail: "\(detail): another program is using the database; try again when it is done")
        case .SQLITE_FULL: return .databaseFailed(path: database, detail: "\(detail): free some disk space")
        default: return .databaseFailed(path: database, detail: detail)
        }
    }

    private static func reason(_ error: any Error) -> String {
        (error as NSError).localizedFailureReason ?? (error as NSError).localizedDescription
    }
}
