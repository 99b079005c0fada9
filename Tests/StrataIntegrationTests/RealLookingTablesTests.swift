import Foundation
import Testing

/// Issue 12's first "Done when", through Deploy/tables.py: four tables the way a user's database holds them
/// (unscaled columns from 1e-3 to 1e6, TEXT numerals, text labels, NULLs, a regression target, a rare positive
/// class), each split non-IID over three strata-agents and trained with default settings, reach a central NumPy
/// fit of the same model: accuracy and macro-F1 at most 2 points below it, RMSE at most 5 % above it, measured
/// with the exported best model (its preprocessing applied in NumPy) on held-out rows; and every agent's
/// updates count.
extension IntegrationSuite {
    @Suite(.serialized) struct RealLookingTablesTests {
        struct Metrics: Decodable {
            var accuracy: Double?
            var macroF1: Double?
            var logLoss: Double?
            var positiveF1: Double?
            var auc: Double?
            var rmse: Double?
            var r2: Double?
        }
        struct Table: Decodable {
            var table: String
            var model: String?
            var error: String?
            var passed: Bool
            var best: Metrics?
            var central: Metrics?
            var agentsWithoutCommittedUpdates: [String]?
        }
        struct Report: Decodable { var tables: [Table] }

        @Test(.timeLimit(.minutes(7)))
        func everyTableReachesTheCentralFit() throws {
            let box = Sandbox("tables")
            let json = box.file("tables.json")
            // 4 tables x (45 s + ~3 s of start, export and stop): about 3.5 minutes on a 2-core machine.
            let result = try box.run("/usr/bin/env", [
                "python3", Binaries.repoRoot + "/Deploy/tables.py", "--bin", Binaries.directory,
                "--duration", "45", "--run-dir", box.file("runs"), "--json", json,
            ], timeout: 390)
            // 0: every table met its bar; 1: one missed it (checked one by one below); 3: setup failed.
            #expect(result.status == 0 || result.status == 1, "Deploy/tables.py:\n\(result.output.suffix(4000))")
            let report = try JSONDecoder().decode(Report.self, from: Data(contentsOf: URL(fileURLWithPath: json)))
            let output = String(result.output.suffix(2500))
            for name in ["credit", "rare", "houses", "segments"] {
                let table = try #require(report.tables.first { $0.table == name }, "no result for \(name):\n\(output)")
                #expect(table.error == nil, "\(name): \(table.error ?? "")")
                guard let best = table.best, let central = table.central else { continue }
                if table.model == "linear" {
                    let f = try #require(best.rmse), c = try #require(central.rmse)
                    #expect(f <= 1.05 * c, "\(name): RMSE \(f) federated vs \(c) central (bar: at most 5 % above)\n\(output)")
                } else {
                    let fa = try #require(best.accuracy), ca = try #require(central.accuracy)
                    #expect(fa >= ca - 0.02, "\(name): accuracy \(fa) federated vs \(ca) central (bar: at most 2 points below)\n\(output)")
                    let ff = try #require(best.macroF1), cf = try #require(central.macroF1)
                    #expect(ff >= cf - 0.02, "\(name): macro-F1 \(ff) federated vs \(cf) central (bar: at most 2 points below)\n\(output)")
                }
                let silent = table.agentsWithoutCommittedUpdates ?? []
                #expect(silent.isEmpty, "\(name): no update committed from \(silent.joined(separator: ", ")): the federation trained without their rows\n\(output)")
            }
        }
    }
}
