import Foundation
import GRDB

/// Which Strata program a state database belongs to, recorded in the SQLite header's `application_id`
/// (`PRAGMA application_id`, a 32-bit integer at byte offset 68 of the file). `file(1)` and `sqlite3`
/// show it; a database without it is either new (empty) or not ours.
public enum StrataDatabaseKind: Sendable, Hashable, CaseIterable {
    /// `strata-coordinator --state`: 0x53545243, "STRC" in ASCII.
    case coordinator
    /// `strata-agent --state`: 0x53545241, "STRA" in ASCII.
    case agentState

    public var applicationID: Int32 {
        switch self {
        case .coordinator: 0x5354_5243
        case .agentState: 0x5354_5241
        }
    }

    var label: String {
        switch self {
        case .coordinator: "Strata coordinator state database"
        case .agentState: "Strata agent state file"
        }
    }

    var flag: String {
        switch self {
        case .coordinator: "strata-coordinator --state"
        case .agentState: "strata-agent --state"
        }
    }

    /// Tables whose presence (with GRDB's migration table naming the first migration) identifies a database
    /// that an older Strata version created before it wrote `application_id`.
    var legacyTables: Set<String> {
        switch self {
        case .coordinator: ["meta", "clients", "modelVersions", "committedUpdates", "grdb_migrations"]
        case .agentState: ["pendingUpdates", "acknowledged", "grdb_migrations"]
        }
    }
}

/// What `DatabaseIdentity.inspect` found.
public enum DatabaseIdentityVerdict: Sendable, Hashable {
    /// No tables yet (a new or empty file): it becomes a database of the expected kind.
    case new
    /// Carries the expected application_id.
    case strata
    /// A Strata database of the expected kind written by a version that did not set application_id yet.
    case legacyStrata
}

/// The checks every Strata state database passes before it is migrated or used: it is intact
/// (`PRAGMA quick_check`) and it is ours (application_id, or the tables of an older Strata version).
public enum DatabaseIdentity {
    /// Opens `path` on its own connection (no journal-mode change; nothing is written) and checks it. Throws
    /// `StoreError.corrupt` or `StoreError.notStrataDatabase`. A missing file is new (SQLite creates it
    /// empty, so its page size can still be chosen). The caller records `kind.applicationID` (`stamp`)
    /// after its migrations unless the verdict is `.strata`.
    public static func verify(path: String, kind: StrataDatabaseKind) throws -> DatabaseIdentityVerdict {
        var configuration = Configuration()
        configuration.label = "strata.identity-check"
        configuration.busyMode = .timeout(5)
        do {
            let queue = try DatabaseQueue(path: path, configuration: configuration)
            defer { try? queue.close() }
            return try queue.writeWithoutTransaction { db in try inspect(db, path: path, kind: kind) }
        } catch let error as DatabaseError {
            throw translate(error, path: path, kind: kind)
        }
    }

    /// The checks alone, on an open connection; writes nothing.
    public static func inspect(_ db: Database, path: String, kind: StrataDatabaseKind) throws -> DatabaseIdentityVerdict {
        // Integrity first: a damaged file could also hide the tables the identity is judged by.
        // quick_check reads every page (O(size)) but skips the index-content cross-checks of integrity_check.
        let problems = try String.fetchAll(db, sql: "PRAGMA quick_check(20)")
        if problems != ["ok"] {
            throw StoreError.corrupt(path: path, detail: problems.prefix(5).joined(separator: "; "))
        }
        let applicationID = try Int32.fetchOne(db, sql: "PRAGMA application_id") ?? 0
        if applicationID == kind.applicationID { return .strata }
        if let other = StrataDatabaseKind.allCases.first(where: { $0.applicationID == applicationID }) {
            throw StoreError.notStrataDatabase(path: path, expected: kind.label,
                                               detail: "it is a \(other.label) (application_id 0x\(String(UInt32(bitPattern: applicationID), radix: 16)))",
                                               fix: "give \(kind.flag) a path of its own; never share one file between \(other.flag) and \(kind.flag)")
        }
        let tables = Set(try String.fetchAll(db, sql: "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'"))
        if applicationID != 0 {
            throw StoreError.notStrataDatabase(path: path, expected: kind.label,
                                               detail: "its application_id is 0x\(String(UInt32(bitPattern: applicationID), radix: 16)), another program's",
                                               fix: "point \(kind.flag) at a new file (it is created) or at this run's own state database")
        }
        if tables.isEmpty { return .new }
        if kind.legacyTables.isSubset(of: tables),
           try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM grdb_migrations WHERE identifier = 'v1')") == true {
            return .legacyStrata
        }
        let listed = tables.sorted().prefix(8).joined(separator: ", ") + (tables.count > 8 ? ", …" : "")
        throw StoreError.notStrataDatabase(path: path, expected: kind.label,
                                           detail: "it already holds tables that are not Strata's (\(listed)) and no Strata application_id",
                                           fix: "point \(kind.flag) at a new file (it is created); nothing was written to this one")
    }

    /// Records the kind in the file's header (a new database, or one from before application_id).
    public static func stamp(_ db: Database, kind: StrataDatabaseKind) throws {
        try db.execute(sql: "PRAGMA application_id = \(kind.applicationID)")
    }

    static func translate(_ error: DatabaseError, path: String, kind: StrataDatabaseKind) -> StoreError {
        switch error.resultCode.primaryResultCode {
        case .SQLITE_CORRUPT:
            return .corrupt(path: path, detail: error.message ?? "SQLITE_CORRUPT")
        case .SQLITE_NOTADB:
            return .notStrataDatabase(path: path, expected: kind.label, detail: "it is not an SQLite database at all (\(error.message ?? "SQLITE_NOTADB"))",
                                      fix: "point \(kind.flag) at a new file (it is created); nothing was written to this one")
        default:
            return .cannotOpen(path: path, detail: error.message ?? "\(error.resultCode)")
        }
    }
}
