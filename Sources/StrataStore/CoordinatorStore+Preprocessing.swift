import Foundation
import GRDB
import StrataCore

/// The federation's preprocessing is part of its model: fixed once, kept in `meta` as JSON, never changed.
extension CoordinatorStore {
    public func preprocessing() async throws -> Preprocessing? {
        try await pool.read { db in
            guard let text = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'preprocessing'") else { return nil }
            do {
                return try JSONDecoder().decode(Preprocessing.self, from: Data(text.utf8))
            } catch {
                throw StoreError.cannotOpen(path: self.path, detail: "the stored preprocessing cannot be read (\(error)); the database is damaged")
            }
        }
    }

    /// Stores it unless one is stored already (the first one wins: a federation's preprocessing never changes).
    /// Returns the one in force.
    @discardableResult
    public func savePreprocessing(_ preprocessing: Preprocessing) async throws -> Preprocessing {
        let text = String(decoding: try JSONEncoder().encode(preprocessing), as: UTF8.self)
        return try await pool.write { db in
            if let stored = try String.fetchOne(db, sql: "SELECT value FROM meta WHERE key = 'preprocessing'") {
                return try JSONDecoder().decode(Preprocessing.self, from: Data(stored.utf8))
            }
            try db.execute(sql: "INSERT INTO meta (key, value) VALUES ('preprocessing', ?)", arguments: [text])
            return preprocessing
        }
    }
}
