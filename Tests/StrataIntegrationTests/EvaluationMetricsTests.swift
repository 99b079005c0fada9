import Foundation
import GRDB
import StrataCore
import Testing

/// RMSE, MAE, R², macro-F1 and AUC over real TLS with real agents: the agents send evaluation statistics, the
/// coordinator pools them, and what it reports equals the metric of the same model computed centrally over
/// every agent's evaluation rows.
extension IntegrationSuite {
    @Suite(.serialized) struct EvaluationMetricsTests {
        /// Rows of one agent's table: features, label, split.
        struct Row {
            var features: [Double]
            var label: Double
            var test: Bool
        }

        static func write(_ rows: [Row], to path: String) throws {
            let db = try DatabaseQueue(path: path)
            let width = rows.first?.features.count ?? 0
            try db.write { db in
                let columns = (0..<width).map { "x\($0) REAL" }.joined(separator: ", ")
                try db.execute(sql: "CREATE TABLE samples (id INTEGER PRIMARY KEY, \(columns), label REAL, split TEXT)")
                let placeholders = Array(repeating: "?", count: width + 2).joined(separator: ", ")
                let names = ((0..<width).map { "x\($0)" } + ["label", "split"]).joined(separator: ", ")
                for row in rows {
                    try db.execute(sql: "INSERT INTO samples (\(names)) VALUES (\(placeholders))",
                                   arguments: StatementArguments(row.features.map { $0 as (any DatabaseValueConvertible)? } + [row.label, row.test ? "test" : "train"]))
                }
            }
        }

        /// What the run stored: the federation's preprocessing and a version's parameters.
        static func stored(_ box: Sandbox, version: Int) throws -> (Preprocessing, [Float]) {
            let db = try DatabaseQueue(path: box.file("coordinator.sqlite"))
            let json = try #require(try db.read { try String.fetchOne($0, sql: "SELECT value FROM meta WHERE key = 'preprocessing'") })
            let preprocessing = try JSONDecoder().decode(Preprocessing.self, from: Data(json.utf8))
            let blob = try #require(try db.read { try Data.fetchOne($0, sql: "SELECT parameters FROM modelVersions WHERE version = ?", arguments: [version]) })
            let parameters = blob.withUnsafeBytes { raw in (0..<blob.count / 4).map { Float(bitPattern: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self)) } }
            return (preprocessing, parameters)
        }

        /// Every agent's evaluation rows as the agents see them: standardised features (and target).
        static func evaluationRows(_ agents: [[Row]], _ preprocessing: Preprocessing, regression: Bool) -> Dataset {
            let rows = agents.flatMap { $0.filter(\.test) }
            var features = rows.flatMap { $0.features.map { Float($0) } }
            preprocessing.transformFeatures(&features)
            let labels = rows.map { regression ? Float(preprocessing.transformTarget(Double(Float($0.label)))) : Float($0.label) }
            return Dataset(featureCount: rows.first?.features.count ?? 0, features: features, labels: labels)
        }

        static func startAgents(_ box: Sandbox, port: Int, count: Int) throws -> [Process] {
            try (1...count).map { i in
                let id = String(format: "agent-%02d", i)
                return try box.start(Binaries.path("strata-agent"),
                                     box.agentArguments(port: port, id: id, database: box.file(String(format: "agent-%02d.sqlite", i))),
                                     log: "\(id).log")
            }
        }

        static func summary(_ box: Sandbox) throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(box.read("summary.json").utf8)) as? [String: Any], "no summary: \(box.read("coordinator.log").suffix(3000))")
        }

        /// y = 1000 + 40·x0 − 0.025·x1 + 10·x2 + 5·x3 + N(0, 5²), with x1 in the thousands and every agent's x0
        /// shifted (non-IID). The errors must come back in the target's units (≈ 5, not the standardised ≈ 0.1).
        @Test(.timeLimit(.minutes(5)))
        func aLinearRegressionReportsRmseMaeAndR2InTheTargetsUnitsEverywhere() throws {
            let box = Sandbox("metrics-regression")
            try box.makePKI(agents: 3)
            var g = SeededGenerator(seed: 12)
            var agents: [[Row]] = []
            var trueSquared = 0.0, testRows = 0.0
            for i in 0..<3 {
                agents.append((0..<(240 + 60 * i)).map { r in
                    let x = [g.nextNormal() + Double(i - 1) * 0.8, 1000 * g.nextNormal(), g.nextNormal(), g.nextNormal()]
                    let noise = 5 * g.nextNormal()
                    let test = r % 4 == 0
                    if test { trueSquared += noise * noise; testRows += 1 }
                    return Row(features: x, label: 1000 + 40 * x[0] - 0.025 * x[1] + 10 * x[2] + 5 * x[3] + noise, test: test)
                })
                try Self.write(agents[i], to: box.file(String(format: "agent-%02d.sqlite", i + 1)))
            }
            let trueRMSE = (trueSquared / testRows).squareRoot()

            let (coordinator, port) = try box.startCoordinator([
                "--model", "linear", "--features", "4", "--mode", "fedavg", "--min-clients", "3", "--standardize", "on",
                "--statistics-agents", "3", "--min-evaluation-clients", "3", "--target-metric", "rmse", "--max-duration", "200",
                "--curve-csv", box.file("curve.csv")])
            let processes = [coordinator] + (try Self.startAgents(box, port: port, count: 3))
            defer { for process in processes where process.isRunning { process.terminate() } }
            let admin = try box.endpointPort("admin"), metricsPort = try box.endpointPort("metrics")
            let log = { "coordinator log:\n\(box.read("coordinator.log").suffix(3000))\nagent:\n\(box.read("agent-01.log").suffix(1500))" }

            try eventually("30 versions evaluated with RMSE, MAE and R²", timeout: 150) {
                let status = try AdminTests.json(box, adminPort: admin, ["status"])
                return (status["latestEvaluatedVersion"] as? Int ?? 0) >= 30 && (status["latestMetrics"] as? [String: Double])?["rmse"] != nil
                    && status["best"] != nil
            }
            // stratactl status: the metrics of the latest evaluation, no accuracy; the best version by RMSE.
            let status = try AdminTests.json(box, adminPort: admin, ["status"])
            #expect(status["model"] as? String == "linear" && status["latestAccuracy"] == nil && status["targetMetric"] as? String == "rmse")
            #expect((status["latestMetrics"] as? [String: Double]).map { Set($0.keys) } == ["rmse", "mae", "r2"], "\(status)")
            let human = try AdminTests.ctl(box, adminPort: admin, ["status"]).output
            #expect(human.contains("metrics         rmse ") && human.contains(", r2 ") && !human.contains("accuracy"), "\(human)")
            #expect(human.contains("best            version ") && human.contains(": rmse "), "\(human)")
            // stratactl evaluations: every round of three agents carried statistics.
            let entries = try AdminTests.json(box, adminPort: admin, ["evaluations", "--limit", "5"])["entries"] as? [[String: Any]] ?? []
            #expect(!entries.isEmpty && entries.allSatisfy { ($0["metrics"] as? [String: Double])?["r2"] != nil && $0["statisticsAnswered"] as? Int == 3 },
                    "\(entries)")
            #expect(try AdminTests.ctl(box, adminPort: admin, ["evaluations"]).output.hasPrefix("VERSION  RMSE"))
            // stratactl models: no accuracy for a regression's versions (it used to print 0).
            let models = try AdminTests.json(box, adminPort: admin, ["models", "--limit", "50"])
            let listed = models["global"] as? [[String: Any]] ?? []
            #expect(!listed.isEmpty && listed.allSatisfy { $0["accuracy"] == nil }, "\(models)")
            // Prometheus: the gauges of the latest evaluation; no classification gauge for a regression.
            let scrape = try PrometheusText.parse(try httpGet(port: metricsPort, path: "/metrics").body)
            #expect(scrape.value("strata_evaluation_rmse") != nil && scrape.value("strata_evaluation_mae") != nil && scrape.value("strata_evaluation_r2") != nil)
            #expect(scrape.value("strata_evaluation_macro_f1") == nil && scrape.value("strata_global_accuracy") == nil)

            coordinator.terminate()
            try box.waitForExit(coordinator, timeout: 60)
            #expect(coordinator.terminationStatus == 0, "\(log())")
            let summary = try Self.summary(box)
            let best = try #require(summary["best"] as? [String: Any], "\(summary)")
            let bestMetrics = try #require(best["metrics"] as? [String: Double], "\(best)")
            #expect(best["metric"] as? String == "rmse" && best["score"] as? Double == bestMetrics["rmse"])
            let last = try #require((summary["lastEvaluation"] as? [String: Any])?["metrics"] as? [String: Double], "\(summary)")
            #expect(Set(last.keys) == ["rmse", "mae", "r2"])
            // Trained to about the noise, in the target's units.
            let rmse = try #require(bestMetrics["rmse"]), mae = try #require(bestMetrics["mae"]), r2 = try #require(bestMetrics["r2"])
            #expect(rmse > 0.8 * trueRMSE && rmse < 1.3 * trueRMSE, "rmse \(rmse), the true model's \(trueRMSE)")
            #expect(mae < rmse && mae > 0.6 * rmse && r2 > 0.95, "mae \(mae) r2 \(r2)")

            // Pooled over the agents = computed centrally over their evaluation rows, for the best version.
            let (preprocessing, parameters) = try Self.stored(box, version: try #require(best["version"] as? Int))
            let spec = ModelSpec(kind: .linearRegression, featureCount: 4, outputCount: 1)
            let central = Trainer.evaluationStatistics(spec: spec, parameters: parameters,
                                                       data: Self.evaluationRows(agents, preprocessing, regression: true), target: preprocessing.target).metrics
            for name in ["rmse", "mae", "r2"] {
                #expect(abs((central[name] ?? .nan) - (bestMetrics[name] ?? .infinity)) <= 1e-9 * max(1, abs(central[name] ?? 1)),
                        "\(name): pooled \(bestMetrics[name] ?? .nan), central \(central[name] ?? .nan)")
            }

            // Progress lines and the curve.
            let lines = box.read("coordinator.log").split(separator: "\n").filter { $0.hasPrefix("version ") }
            #expect(!lines.isEmpty && lines.allSatisfy { $0.contains(" rmse ") && $0.contains(" mae ") && $0.contains(" r2 ") && !$0.contains("accuracy") },
                    "\(lines.prefix(3))")
            let curve = box.read("curve.csv").split(separator: "\n")
            #expect(curve.first?.hasSuffix(",rmse,mae,r2,macro_f1,auc,updates,model_bytes") == true)
            #expect(curve.dropFirst().allSatisfy { line in
                let fields = line.split(separator: ",", omittingEmptySubsequences: false)
                // ... and what reaching the version cost: deltas received and model bytes, counts that only grow.
                return fields.count == 16 && Double(fields[9]) != nil && Double(fields[11]) != nil && fields[12].isEmpty
                    && (Int(fields[14]) ?? -1) >= 0 && (Int(fields[15]) ?? -1) > 0
            }, "\(curve.prefix(3))")
        }

        /// Two classes, the positive one a minority of about a quarter (more or less per agent): the run ends at
        /// its macro-F1 target, and the pooled macro-F1 and AUC are those of the pooled rows.
        @Test(.timeLimit(.minutes(5)))
        func aClassificationWithATargetOnMacroF1ReachesIt() throws {
            let box = Sandbox("metrics-f1")
            try box.makePKI(agents: 3)
            var g = SeededGenerator(seed: 3)
            var agents: [[Row]] = []
            for i in 0..<3 {
                agents.append((0..<(300 + 50 * i)).map { r in
                    let x = (0..<5).map { j in g.nextNormal() + (j == 0 ? Double(i - 1) * 0.5 : 0) }
                    let score = 2 * x[0] - 1.5 * x[1] + x[2] - 3 + 0.5 * g.nextNormal()
                    return Row(features: x, label: score > 0 ? 1 : 0, test: r % 3 == 0)
                })
                try Self.write(agents[i], to: box.file(String(format: "agent-%02d.sqlite", i + 1)))
            }
            // A regression metric for a classifier is refused before anything starts, with the reason.
            let wrong = try box.run(Binaries.path("strata-coordinator"), [
                "--cert", box.file("pki/coordinator.crt"), "--key", box.file("pki/coordinator.key"), "--ca", box.file("pki/ca.crt"),
                "--state", box.file("unused.sqlite"), "--features", "5", "--classes", "2", "--target-metric", "rmse"])
            #expect(wrong.status != 0 && wrong.output.contains("rmse is a regression metric"), "\(wrong.output)")

            let (coordinator, port) = try box.startCoordinator([
                "--features", "5", "--classes", "2", "--mode", "fedavg", "--min-clients", "3", "--standardize", "on",
                "--statistics-agents", "3", "--min-evaluation-clients", "3", "--target-metric", "macro-f1", "--target", "0.9",
                "--learning-rate", "0.003", "--max-duration", "150", "--curve-csv", box.file("curve.csv")])
            let agentProcesses = try Self.startAgents(box, port: port, count: 3)
            defer { for process in [coordinator] + agentProcesses where process.isRunning { process.terminate() } }
            try box.waitForExit(coordinator, timeout: 180)
            let log = "coordinator log:\n\(box.read("coordinator.log").suffix(3000))\nagent:\n\(box.read("agent-01.log").suffix(1500))"
            #expect(coordinator.terminationStatus == 0, "\(log)")
            let summary = try Self.summary(box)
            #expect(summary["reason"] as? String == "target-reached" && summary["targetReached"] as? Bool == true
                    && summary["targetMetric"] as? String == "macro-f1", "\(summary)\n\(log)")
            let best = try #require(summary["best"] as? [String: Any], "\(summary)")
            let score = try #require(best["score"] as? Double)
            let bestMetrics = try #require(best["metrics"] as? [String: Double], "\(best)")
            #expect(best["metric"] as? String == "macro-f1" && score >= 0.85 && bestMetrics["macro-f1"] == score)
            let auc = try #require(bestMetrics["auc"], "two classes: an AUC too")
            #expect(auc > 0.9)
            let lines = box.read("coordinator.log").split(separator: "\n").filter { $0.hasPrefix("version ") }
            #expect(lines.contains { $0.contains(" accuracy ") && $0.contains(" macro-f1 ") && $0.contains(" auc ") }, "\(lines.suffix(3))")
            // The minority class makes accuracy pass 0.9 versions before macro-F1 does: the run went on until macro-F1 got there.
            let curve = box.read("curve.csv").split(separator: "\n").dropFirst().map { $0.split(separator: ",", omittingEmptySubsequences: false) }
            let points = curve.compactMap { f in
                f.count == 16 ? (version: Int(f[2]) ?? 0, accuracy: Double(f[3]) ?? 0, counted: f[8] == "1", f1: Double(f[12]) ?? -1) : nil
            }
            #expect(points.count == curve.count && points.contains { $0.accuracy >= 0.9 && $0.f1 < 0.9 }, "\(points)")
            #expect(points.first { $0.counted && $0.f1 >= 0.9 }?.version == best["version"] as? Int, "\(points)")

            // The pooled macro-F1 and AUC are those of the best model over every agent's evaluation rows.
            let (preprocessing, parameters) = try Self.stored(box, version: try #require(best["version"] as? Int))
            let spec = ModelSpec(kind: .softmaxRegression, featureCount: 5, outputCount: 2)
            let central = Trainer.evaluationStatistics(spec: spec, parameters: parameters,
                                                       data: Self.evaluationRows(agents, preprocessing, regression: false)).metrics
            #expect(abs((central["macro-f1"] ?? .nan) - score) < 1e-12, "pooled \(score), central \(central)")
            #expect(abs((central["auc"] ?? .nan) - auc) < 1e-12, "pooled \(auc), central \(central)")
        }
    }
}
