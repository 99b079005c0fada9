import Foundation
import StrataWire

/// The human views of the admin API's answers (what `stratactl` prints without --json).
public enum Render {
    /// The metrics pooled from evaluation statistics, in a fixed order, as "rmse 1.2346, mae 0.9800, r2 0.9512".
    public static let metricOrder = ["rmse", "mae", "r2", "macro-f1", "auc"]

    static func metricList(_ metrics: [String: Double]) -> String {
        metricOrder.compactMap { name in metrics[name].map { "\(name) \(Display.metric($0))" } }.joined(separator: ", ")
    }

    public static func status(_ s: StatusReport, now: Double = Date().timeIntervalSince1970) -> String {
        var accuracy = Display.number(s.latestAccuracy)
        if let v = s.latestEvaluatedVersion { accuracy += " (version \(v))" }
        if let best = s.bestAccuracy { accuracy += ", best \(Display.number(best))" }
        if let target = s.targetAccuracy { accuracy += ", target \(Display.number(target))" }
        // A linear model has no accuracy: its line is the metrics line (RMSE, MAE, R² in the target's units).
        let linear = s.model == "linear"
        var accuracyLine = linear ? "" : "accuracy        \(accuracy)\n"
        if let metrics = s.latestMetrics, !metrics.isEmpty {
            accuracyLine += "metrics         \(metricList(metrics))\(s.latestEvaluatedVersion.map { " (version \($0))" } ?? "")\n"
        } else if linear {
            accuracyLine += "metrics         \(s.latestEvaluatedVersion == nil ? "not evaluated yet" : "none reported (agents without evaluation statistics)")\n"
        }
        var best = "none yet (no evaluation counted)"
        if let b = s.best {
            best = "version \(b.version): \(b.metric) \(Display.metric(b.score)) (\(b.answered)/\(b.asked) agents answered)"
            // The best version is the latest within one standard error of the best score seen: say so when they differ.
            if let seen = s.bestScoreSeen, Display.metric(seen) != Display.metric(b.score) {
                best += "; best \(b.metric) seen \(Display.metric(seen)), this version is the latest within its standard error"
            }
        }
        if let metric = s.targetMetric, let target = s.target, metric != "accuracy" { best += ", target \(metric) \(Display.metric(target))" }
        // A coordinator from before best versions were kept reports neither.
        let bestLine = s.best == nil && s.targetMetric == nil ? "" : "best            \(best)\n"
        var training = ""
        if let minClients = s.minClients, s.waitingForClients == true {
            training = "training        waiting for \(minClients) agents to connect (--min-clients; \(s.connectedClients) connected)\n"
        }
        let states = ["healthy", "suspect", "lost", "evicted", "unknown"].compactMap { state in
            s.clientsByHealth[state].map { "\(state) \($0)" }
        }
        var text = """
            mode            \(s.mode)
            global version  \(s.globalVersion)
            \(accuracyLine)\(bestLine)\(training)state           \(s.ready ? "ready" : "not ready")\(s.draining ? ", draining" : ""), up \(Display.duration(s.uptimeSeconds))
            updates         \(s.updatesAccepted) accepted, \(s.updatesRefused) refused
            clients         \(s.connectedClients) connected; \(states.isEmpty ? "none known" : states.joined(separator: ", "))

            """
        text += s.tiers.isEmpty ? "tiers           not formed yet\n" : "\n" + tierTable(s.tiers, members: false)
        return text
    }

    public static func tiers(_ report: TiersReport) -> String {
        var text = report.formed || !report.tiers.isEmpty ? tierTable(report.tiers, members: true) : "tiers are not formed yet (agents are being profiled)\n"
        if !report.unassigned.isEmpty { text += "\nnot in a tier yet: \(report.unassigned.joined(separator: ", "))\n" }
        return text
    }

    static func tierTable(_ tiers: [TierReport], members: Bool) -> String {
        var table = Table(members ? ["TIER", "SIZE", "LATENCY", "VERSION", "UPDATES/S", "WEIGHT", "MEMBERS"]
                                  : ["TIER", "SIZE", "LATENCY", "VERSION", "UPDATES/S", "WEIGHT"])
        for t in tiers {
            var row = [String(t.tier), String(t.members.count), band(t.latencyMin, t.latencyMax), String(t.version),
                       Display.number(t.updateRate, digits: 1), Display.number(t.weight, digits: 3)]
            if members { row.append(t.members.joined(separator: ",")) }
            table.add(row)
        }
        return table.render()
    }

    static func band(_ low: Double?, _ high: Double?) -> String {
        guard let low, let high else { return "-" }
        return low == high ? Display.duration(low) : "\(Display.duration(low))-\(Display.duration(high))"
    }

    public static func clients(_ clients: [ClientSummary]) -> String {
        guard !clients.isEmpty else { return "no clients match\n" }
        var table = Table(["CLIENT", "STATE", "CONNECTED", "TIER", "LATENCY", "ACCEPTED", "REFUSED", "LAST ERROR"])
        for c in clients {
            table.add([c.id, c.health, c.connected ? "yes" : "no", tier(c.tier, pinned: c.pinnedTier), Display.duration(c.latencySeconds),
                       String(c.updatesAccepted), String(c.updatesRefused), truncate(c.lastError ?? "-", 60)])
        }
        return table.render()
    }

    static func tier(_ tier: Int?, pinned: Int?) -> String {
        let base = tier.map(String.init) ?? "-"
        return pinned != nil ? base + " (pinned)" : base
    }

    public static func client(_ d: ClientDetail, now: Double = Date().timeIntervalSince1970) -> String {
        let c = d.client
        var text = """
            client          \(c.id)
            state           \(c.health)\(c.healthReason.map { " (\($0))" } ?? "")\(c.healthSince.map { ", since \(Display.age($0, now: now))" } ?? "")
            connected       \(c.connected ? "yes" : "no"), \(c.sessions) session(s), the latest started \(Display.age(c.lastSeen, now: now))
            tier            \(tier(c.tier, pinned: c.pinnedTier))
            latency         \(Display.duration(c.latencySeconds)) smoothed, \(Display.duration(c.lastLatencySeconds)) last, \(c.latencySamples) samples
            updates         \(c.updatesAccepted) accepted, \(c.updatesRefused) refused
            agent           \(c.agentVersion.isEmpty ? "-" : c.agentVersion), \(c.trainSamples) training rows
            last error      \(c.lastError ?? "-")

            """
        if let e = c.eviction {
            text += "evicted         by \(e.by) \(Display.age(e.at, now: now)): \(e.reason)\n"
        }
        text += "\nLatency history (committed updates, newest first)\n"
        if d.updates.isEmpty { text += "  none\n" } else {
            var table = Table(["TASK", "VERSION", "TIER", "LATENCY", "STALENESS", "WEIGHT", "SAMPLES", "RECEIVED"])
            for u in d.updates {
                table.add([String(u.taskID), String(u.version), String(u.tier), Display.duration(u.latencySeconds), String(u.staleness),
                           Display.number(u.weight, digits: 3), String(u.sampleCount), Display.age(u.receivedAt, now: now)])
            }
            text += table.render()
        }
        text += "\nRefused updates\n"
        if d.refusals.isEmpty { text += "  none\n" } else {
            var table = Table(["TASK", "CODE", "WHEN", "REASON"])
            for r in d.refusals { table.add([String(r.taskID), r.code, Display.age(r.at, now: now), r.reason]) }
            text += table.render()
        }
        text += "\nTier moves\n"
        if d.tierMoves.isEmpty { text += "  none\n" } else {
            var table = Table(["FROM", "TO", "REASON", "LATENCY", "WHEN"])
            for m in d.tierMoves {
                table.add([Display.optional(m.from), String(m.to), m.reason, Display.duration(m.latencySeconds), Display.age(m.at, now: now)])
            }
            text += table.render()
        }
        text += "\nHealth transitions\n"
        if d.healthEvents.isEmpty { text += "  none\n" } else {
            var table = Table(["FROM", "TO", "WHEN", "REASON"])
            for e in d.healthEvents { table.add([e.from ?? "-", e.to, Display.age(e.at, now: now), e.reason]) }
            text += table.render()
        }
        return text
    }

    public static func models(_ report: ModelsReport, now: Double = Date().timeIntervalSince1970) -> String {
        var table = Table(["VERSION", "CREATED", "TRIGGER", "TIER", "UPDATES", "STALENESS", "ACCURACY", "PARAMETERS", "TIER VERSIONS", "TIER WEIGHTS"])
        for m in report.global {
            table.add([String(m.version), Display.age(m.createdAt, now: now), m.trigger, Display.optional(m.tier), String(m.updateCount),
                       Display.number(m.meanStaleness, digits: 2), Display.number(m.accuracy),
                       m.parametersKept == false ? "dropped" : "kept",
                       m.tierVersions.isEmpty ? "-" : m.tierVersions.map(String.init).joined(separator: ","),
                       m.tierWeights.isEmpty ? "-" : m.tierWeights.map { Display.number($0, digits: 3) }.joined(separator: ",")])
        }
        var text = "Global models\n" + table.render()
        if !report.tiers.isEmpty {
            var tiers = Table(["TIER", "VERSION", "GLOBAL VERSION", "CREATED"])
            for t in report.tiers { tiers.add([String(t.tier), String(t.version), String(t.globalVersion), Display.age(t.createdAt, now: now)]) }
            text += "\nTier models\n" + tiers.render()
        }
        return text
    }

    /// The evaluation curve, newest first: answered of asked agents, and whether each round counted.
    public static func evaluations(_ report: EvaluationsReport, now: Double = Date().timeIntervalSince1970) -> String {
        guard !report.entries.isEmpty else { return "no evaluation round has closed yet\n" }
        // A linear model's accuracy is always 0: its columns are RMSE, MAE, R² (when the agents sent statistics).
        let withAccuracy = report.model != "linear"
        let pooled = metricOrder.filter { name in report.entries.contains { $0.metrics?[name] != nil } }
        var table = Table(["VERSION"] + (withAccuracy ? ["ACCURACY"] : []) + pooled.map { $0.uppercased() }
                          + ["LOSS", "ANSWERED", "COUNTED", "BEST", "CLOSED"])
        for e in report.entries {
            table.add([String(e.version)] + (withAccuracy ? [Display.number(e.accuracy)] : []) + pooled.map { Display.metric(e.metrics?[$0]) }
                      + [Display.metric(e.loss), "\(e.answered)/\(e.asked)",
                         e.counted ? "yes" : "no (needs \(e.required))", e.best ? "best \(e.metric)" : "", Display.age(e.at, now: now)])
        }
        return table.render()
    }

    public static func action(_ result: ActionResult) -> String {
        var text = "\(result.action) \(result.target): \(result.message)\n"
        for move in result.moves {
            text += "  \(move.client): tier \(move.from.map(String.init) ?? "-") -> \(move.to)\n"
        }
        return text
    }

    public static func audit(_ entries: [AuditEntry], now: Double = Date().timeIntervalSince1970) -> String {
        guard !entries.isEmpty else { return "no admin actions recorded\n" }
        var table = Table(["ID", "WHEN", "ACTOR", "ACTION", "TARGET", "RESULT", "DETAIL"])
        for e in entries {
            table.add([String(e.id), Display.age(e.at, now: now), e.actor, e.action, e.target, e.result, e.detail.isEmpty ? "-" : e.detail])
        }
        return table.render()
    }

    public static func watch(_ status: StatusReport, clients: [ClientSummary], interval: Double, now: Double = Date().timeIntervalSince1970) -> String {
        let clock = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: now))
        return "stratactl watch · every \(Display.number(interval, digits: 1))s · \(clock) · Ctrl-C to stop\n\n"
            + Render.status(status, now: now) + "\n" + Render.clients(clients)
    }

    static func truncate(_ text: String, _ limit: Int) -> String {
        text.count <= limit ? text : String(text.prefix(limit - 1)) + "…"
    }
}
