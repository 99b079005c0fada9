import Logging
import StrataCore
import StrataData
import StrataStore
import StrataWire
import Testing
@testable import StrataAgent

/// The hello carries the feature names and must fit the coordinator's first-frame limit: an agent whose
/// names do not fit says so at start, with what to do, instead of being refused on every connection.
@Suite struct HelloLimitTests {
    func samples(columns: Int, nameLength: Int) -> LoadedSamples {
        let names = (0..<columns).map { j in "c\(j)_" + String(repeating: "x", count: max(0, nameLength - 8)) }
        return LoadedSamples(train: Dataset(featureCount: columns, features: [Float](repeating: 1, count: columns), labels: [0]),
                             test: Dataset(featureCount: columns, features: [], labels: []),
                             columns: names.map { FeatureColumn(name: $0, kind: .real, declaredType: "REAL", missingCount: 0) })
    }

    @Test func aTableWhoseColumnNamesFitIsTaken() throws {
        // 2,000 columns (SQLite's default maximum) of 100-character names: ~208 KB, under the limit.
        let loaded = try AgentService.prepare(samples(columns: 2_000, nameLength: 100), source: "SQLite database t.sqlite", logger: Logger(label: "test"))
        #expect(loaded.columns.count == 2_000)
    }

    @Test func namesOverTheFirstFrameLimitAreRefusedAtStartWithTheFix() throws {
        do {
            _ = try AgentService.prepare(samples(columns: 2_000, nameLength: 200), source: "SQLite database t.sqlite", logger: Logger(label: "test"))
            Issue.record("a hello of ~400 KB was accepted")
        } catch let error as AgentError {
            guard case .helloTooLarge(let bytes, let columns) = error else { Issue.record("\(error)"); return }
            #expect(columns == 2_000 && bytes > Hello.maxPayloadBytes)
            #expect("\(error)".contains("--query") && "\(error)".contains("--exclude-columns"))
        }
    }
}
