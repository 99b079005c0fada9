import Foundation
import Testing

/// 20 % Byzantine agents (Tests/adversary/byzantine_agent.py: a client written from docs/PROTOCOL.md that
/// speaks the real protocol over mutual TLS) against 8 honest strata-agents, through Deploy/byzantine.py:
/// the same honest agents with and without the attackers, final accuracy on the honest agents' test rows.
extension IntegrationSuite {
    @Suite(.serialized) struct ByzantineTests {
        struct Run: Decodable {
            var scenario: String
            var finalAccuracy: Double?
            var earlyStop: String?
        }
        struct Report: Decodable { var runs: [Run] }

        @Test(.timeLimit(.minutes(8)))
        func aByzantineFifthNeitherStopsNorWrecksTheFederation() throws {
            let box = Sandbox("byzantine")
            let json = box.file("byzantine.json")
            let result = try box.run("/usr/bin/env", [
                "python3", Binaries.repoRoot + "/Deploy/byzantine.py", "--bin", Binaries.directory,
                "--scenarios", "clean,large-norm,mix", "--mix", "sign-flip,lying-eval",
                "--duration", "45", "--run-dir", box.file("runs"), "--json", json,
            ], timeout: 420)
            #expect(result.status == 0, "Deploy/byzantine.py:\n\(result.output.suffix(3000))")
            let report = try JSONDecoder().decode(Report.self, from: Data(contentsOf: URL(fileURLWithPath: json)))
            func run(_ scenario: String) throws -> Run { try #require(report.runs.first { $0.scenario == scenario }) }
            let clean = try #require(try run("clean").finalAccuracy)
            for scenario in ["clean", "large-norm", "mix"] {
                let stop = try run(scenario).earlyStop
                #expect(stop == nil, "\(scenario) stopped early: \(stop ?? "")")
            }
            // Large-norm attackers (|Δ| = 9,900, under --max-update-norm) took accuracy to 0.06-0.66 before, and
            // to 0.85 (loss 39) when every agent started at once and the two instant attackers set the bound of
            // the first buffer (now held until the buffer steps: RobustnessTests).
            // Measured over several runs the two are within 2 points on average; one 45-s run of each on a
            // loaded 2-core machine varies by about ±2 points, hence the test's margin of 5.
            let largeNorm = try #require(try run("large-norm").finalAccuracy)
            #expect(largeNorm >= clean - 0.05, "large-norm \(largeNorm) vs clean \(clean)\n\(result.output.suffix(2000))")
            // A sign-flipper (x10) and a lying evaluator (accuracy 1.0 on 2^62 rows; it trains as a sign-flipper)
            // ended the federation or crashed the coordinator before (0.04-0.67); now they slow it, within the 20
            // points SECURITY.md states. Aligned attacks are issue 17's open item: one 45-s run lands anywhere
            // from 5 to 17 points below the clean run (CI measured 0.794 against 0.961 once), so the margin is the
            // documented bound, not a tighter one this noise would cross.
            let mix = try #require(try run("mix").finalAccuracy)
            #expect(mix >= clean - 0.20, "mix \(mix) vs clean \(clean)\n\(result.output.suffix(2000))")
        }
    }
}
