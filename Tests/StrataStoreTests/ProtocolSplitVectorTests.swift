import Foundation
import GRDB
import StrataData
import Testing
@testable import StrataStore

/// The evaluation-row split printed in docs/PROTOCOL.md §8, and the feature order and row keys it describes,
/// checked against the reference data source.
@Suite struct ProtocolSplitVectorTests {
    static let documentPath = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("docs/PROTOCOL.md").path

    static func documentBlock(_ name: String) throws -> [String] {
        let lines = try String(contentsOfFile: documentPath, encoding: .utf8).components(separatedBy: "\n")
        let marker = try #require(lines.firstIndex { $0.trimmingCharacters(in: .whitespaces) == "<!-- vectors: \(name) -->" },
                                  "docs/PROTOCOL.md has no <!-- vectors: \(name) -->")
        #expect(lines[marker + 1].hasPrefix("```"))
        let end = try #require(lines[(marker + 2)...].firstIndex { $0.hasPrefix("```") })
        return Array(lines[(marker + 2)..<end])
    }

    static func evaluationKeys(seed: UInt64, fraction: Double, keys: ClosedRange<UInt64>) -> [UInt64] {
        keys.filter { SampleDataSource.deterministicTest(rowKey: $0, seed: seed, fraction: fraction) }
    }

    @Test func splitVectorsMatchTheDocument() throws {
        let lines = [(UInt64(0), 0.2, UInt64(40)), (7, 0.5, 20)].map { seed, fraction, last in
            "splitSeed \(seed), testFraction \(fraction), row keys 1-\(last) -> evaluation rows: "
                + Self.evaluationKeys(seed: seed, fraction: fraction, keys: 1...last).map(String.init).joined(separator: " ")
        }
        #expect(try Self.documentBlock("split") == lines)
    }

    /// §8: feature columns in declaration order without the label, the primary key and non-numeric columns;
    /// rows in rowid order; the split by the hash of the rowid (table) or of the 1-based result position (query).
    @Test func featureOrderAndRowKeysAreAsDocumented() throws {
        let path = NSTemporaryDirectory() + "strata-protocol-\(UUID().uuidString).sqlite"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in
            try db.execute(sql: "CREATE TABLE t (id INTEGER PRIMARY KEY, b REAL, label INTEGER, note TEXT, a INTEGER)")
            for id in 1...40 {
                try db.execute(sql: "INSERT INTO t (id, b, label, note, a) VALUES (?, ?, ?, ?, ?)",
                               arguments: [id, Double(id) + 0.5, id % 2, "row \(id)", -(id % 7)])
            }
        }
        let expectedKeys = Self.evaluationKeys(seed: 0, fraction: 0.2, keys: 1...40).map(Int.init)

        let table = try SampleDataSource(databasePath: path, selection: .table(name: "t", featureColumns: nil), splitColumn: nil).load()
        #expect(table.featureColumns == ["b", "a"])
        #expect(table.test.count == expectedKeys.count && table.train.count == 40 - expectedKeys.count)
        // Feature b holds rowid + 0.5: the evaluation rows are exactly the hashed rowids, in rowid order.
        #expect(stride(from: 0, to: table.test.features.count, by: 2).map { Int(table.test.features[$0] - 0.5) } == expectedKeys)
        #expect(stride(from: 0, to: table.train.features.count, by: 2).map { Int(table.train.features[$0] - 0.5) }
                == (1...40).filter { !expectedKeys.contains($0) })

        // A query numbers its rows 1, 2, … in result order: here row k of the result is id 41 − k.
        let query = try SampleDataSource(databasePath: path, selection: .query(sql: "SELECT b, label FROM t ORDER BY id DESC"), splitColumn: nil).load()
        #expect(query.featureColumns == ["b"])
        #expect(query.test.features.map { 41 - Int($0 - 0.5) } == expectedKeys)
    }
}
