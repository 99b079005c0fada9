import Foundation
import Testing

/// The Prometheus text exposition format (0.0.4), parsed strictly enough to catch a malformed export:
/// every sample belongs to a family declared by `# TYPE`, names and labels are well formed, values are numbers,
/// histogram buckets are cumulative and end at +Inf with the same count as `_count`.
struct PrometheusText {
    struct Sample {
        var name: String
        var labels: [String: String]
        var value: Double
    }
    var types: [String: String] = [:]
    var samples: [Sample] = []

    enum ParseError: Error, CustomStringConvertible {
        case line(Int, String, String)
        var description: String {
            if case .line(let n, let text, let why) = self { return "line \(n) '\(text)': \(why)" }
            return ""
        }
    }

    static func parse(_ text: String) throws -> PrometheusText {
        var result = PrometheusText()
        let name = #/^[a-zA-Z_:][a-zA-Z0-9_:]*$/#
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = String(raw)
            let n = index + 1
            if line.isEmpty { continue }
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ", maxSplits: 3).map(String.init)
                if parts.count >= 2, parts[1] == "TYPE" {
                    guard parts.count == 4, (try? name.wholeMatch(in: parts[2])) != nil,
                          ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else {
                        throw ParseError.line(n, line, "bad TYPE line")
                    }
                    guard result.types[parts[2]] == nil else { throw ParseError.line(n, line, "TYPE declared twice") }
                    result.types[parts[2]] = parts[3]
                }
                continue
            }
            var rest = Substring(line)
            let metric = String(rest.prefix { $0 != "{" && $0 != " " })
            guard (try? name.wholeMatch(in: metric)) != nil else { throw ParseError.line(n, line, "bad metric name") }
            rest = rest.dropFirst(metric.count)
            var labels: [String: String] = [:]
            if rest.first == "{" {
                guard let close = rest.firstIndex(of: "}") else { throw ParseError.line(n, line, "unclosed labels") }
                let body = rest[rest.index(after: rest.startIndex)..<close]
                for pair in body.split(separator: ",") where !pair.isEmpty {
                    let kv = pair.split(separator: "=", maxSplits: 1)
                    guard kv.count == 2, (try? name.wholeMatch(in: String(kv[0]))) != nil,
                          kv[1].count >= 2, kv[1].first == "\"", kv[1].last == "\"" else {
                        throw ParseError.line(n, line, "bad label \(pair)")
                    }
                    labels[String(kv[0])] = String(kv[1].dropFirst().dropLast())
                }
                rest = rest[rest.index(after: close)...]
            }
            let fields = rest.split(separator: " ")
            guard fields.count == 1 || fields.count == 2 else { throw ParseError.line(n, line, "expected a value (and optional timestamp)") }
            let valueText = String(fields[0])
            guard let value = Double(valueText) ?? (valueText == "+Inf" ? .infinity : valueText == "-Inf" ? -.infinity : valueText == "NaN" ? .nan : nil) else {
                throw ParseError.line(n, line, "value is not a number")
            }
            let family = ["_bucket", "_sum", "_count"].reduce(metric) { name, suffix in
                name.hasSuffix(suffix) && result.types[String(name.dropLast(suffix.count))] == "histogram" ? String(name.dropLast(suffix.count)) : name
            }
            guard result.types[family] != nil else { throw ParseError.line(n, line, "sample of a family without a TYPE line") }
            result.samples.append(Sample(name: metric, labels: labels, value: value))
        }
        // Histograms: cumulative buckets ending in +Inf equal to _count.
        for (family, type) in result.types where type == "histogram" {
            let buckets = result.samples.filter { $0.name == family + "_bucket" }
            let series = Dictionary(grouping: buckets) { $0.labels.filter { $0.key != "le" }.sorted { $0.key < $1.key }.map { "\($0)=\($1)" }.joined(separator: ",") }
            for (key, series) in series {
                let values = series.map(\.value)
                guard values == values.sorted(), series.last?.labels["le"] == "+Inf" else {
                    throw ParseError.line(0, family, "buckets of \(key) are not cumulative or do not end at +Inf")
                }
                let count = result.samples.first { $0.name == family + "_count" && $0.labels.filter { $0.key != "le" }.sorted { $0.key < $1.key }.map { "\($0)=\($1)" }.joined(separator: ",") == key }
                guard count?.value == series.last?.value else { throw ParseError.line(0, family, "_count differs from the +Inf bucket") }
            }
        }
        return result
    }

    func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { $0.name == name && $0.labels == labels }?.value
    }
}

extension IntegrationSuite {
    @Suite(.serialized) struct MetricsTests {
        @Test func theParserRejectsMalformedExports() {
            #expect(throws: PrometheusText.ParseError.self) { try PrometheusText.parse("strata_x 1\n") }   // no TYPE
            #expect(throws: PrometheusText.ParseError.self) { try PrometheusText.parse("# TYPE a counter\na{b=1} 2\n") }   // unquoted label
            #expect(throws: PrometheusText.ParseError.self) { try PrometheusText.parse("# TYPE a gauge\na one\n") }
            #expect(throws: PrometheusText.ParseError.self) {
                try PrometheusText.parse("# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\nh_count 2\nh_sum 1\n")
            }
            #expect(throws: Never.self) { try PrometheusText.parse("# TYPE a counter\na{b=\"x\"} 2\n") }
        }

        @Test(.timeLimit(.minutes(4)))
        func metricsParseAndMoveAsAFederationRuns() throws {
            let box = Sandbox("metrics")
            try box.makePKI(agents: 3)
            let data = try box.run(Binaries.path("strata-datagen"), ["--out", box.file("data"), "--clients", "3", "--seed", "4", "--max-samples", "100"])
            try #require(data.status == 0)
            let (coordinator, port) = try box.startCoordinator(["--mode", "fedbuff", "--buffer-size", "2", "--evaluate-interval", "0.5",
                                                                "--evaluate-every", "0", "--max-duration", "200",
                                                                "--log-format", "json"])
            let metrics = try box.endpointPort("metrics")

            #expect(try httpGet(port: metrics, path: "/healthz") == (200, "ok\n"))
            #expect(try httpGet(port: metrics, path: "/readyz").status == 200)
            #expect(try httpGet(port: metrics, path: "/nothing").status == 404)
            let before = try PrometheusText.parse(try httpGet(port: metrics, path: "/metrics").body)
            #expect(before.types["strata_updates_received_total"] == "counter")
            #expect(before.value("strata_updates_received_total") == 0)
            #expect(before.value("strata_global_version") == 0)

            var agents: [Process] = []
            for i in 1...3 {
                let id = String(format: "agent-%02d", i)
                agents.append(try box.start(Binaries.path("strata-agent"),
                                            box.agentArguments(port: port, id: id, database: box.file(String(format: "data/client-%02d.sqlite", i))),
                                            log: "\(id).log"))
            }
            defer { for agent in agents where agent.isRunning { agent.terminate() } }
            try eventually("updates accepted and a version evaluated", timeout: 90) {
                let now = try PrometheusText.parse(try httpGet(port: metrics, path: "/metrics").body)
                return (now.value("strata_updates_accepted_total") ?? 0) >= 10 && now.value("strata_global_accuracy") != nil
            }
            let text = try httpGet(port: metrics, path: "/metrics").body
            let after = try PrometheusText.parse(text)
            let received = try #require(after.value("strata_updates_received_total"))
            let accepted = try #require(after.value("strata_updates_accepted_total"))
            #expect(received >= accepted && accepted >= 10)
            #expect((after.value("strata_update_staleness_count") ?? 0) == accepted)
            #expect((after.value("strata_aggregation_step_seconds_count") ?? 0) >= 1)
            #expect((after.value("strata_commit_seconds_count") ?? 0) >= 1)
            #expect((after.value("strata_global_version") ?? 0) >= 5)
            #expect((after.value("strata_global_accuracy") ?? 0) > 0.1)
            #expect(after.value("strata_clients", ["state": "healthy"]) == 3)
            #expect(after.value("strata_connected_clients") == 3)
            #expect(after.value("strata_sessions_opened_total") == 3)
            #expect((after.value("strata_tier_version", ["tier": "0"]) ?? 0) >= 5)
            #expect((after.value("strata_tier_update_rate", ["tier": "0"]) ?? 0) > 0)
            #expect(after.value("strata_tier_size", ["tier": "0"]) == 3)
            #expect((after.value("strata_agent_bytes_received_total") ?? 0) > 10_000)
            #expect((after.value("strata_agent_bytes_sent_total") ?? 0) > 10_000)
            #expect(after.value("strata_updates_refused_total", ["reason": "too-stale"]) != nil)
            #expect(after.types["strata_update_staleness"] == "histogram", "\(text)")

            // Counters keep moving.
            try eventually("the received counter grows", timeout: 30) {
                (try PrometheusText.parse(try httpGet(port: metrics, path: "/metrics").body).value("strata_updates_received_total") ?? 0) > received
            }
            #expect(coordinator.isRunning)

            // --log-format json: one object per line with the structured fields (client, tier, task, version).
            let logs = box.read("coordinator.log").split(separator: "\n").filter { $0.hasPrefix("{") }
                .compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: String] }
            #expect(!logs.isEmpty && logs.allSatisfy { $0["ts"] != nil && $0["level"] != nil && $0["msg"] != nil })
            #expect(logs.contains { $0["msg"] == "agent joined" && $0["client"] == "agent-01" })
            #expect(logs.contains { $0["msg"] == "version committed" && $0["version"] != nil && $0["tier"] == "0" })
        }
    }
}
