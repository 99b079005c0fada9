import CoreMetrics
import Foundation
import Prometheus

/// The coordinator's metrics, through swift-metrics. `CoordinatorMetrics.prometheus()` backs them with a
/// Prometheus registry of their own (no global bootstrap, so tests and embedders can run several); `.disabled`
/// drops everything. Names follow Prometheus conventions; docs/OPERATIONS.md lists them.
public struct CoordinatorMetrics: Sendable {
    let factory: any MetricsFactory
    /// The registry `/metrics` renders (nil when disabled).
    public let registry: PrometheusCollectorRegistry?

    let updatesReceived: CoreMetrics.Counter
    let updatesAccepted: CoreMetrics.Counter
    /// Bytes of the deltas received (tensors as they travelled: float32 or compressed), labelled by encoding.
    func deltaBytes(encoding: String) -> CoreMetrics.Counter {
        CoreMetrics.Counter(label: "strata_update_delta_bytes_total", dimensions: [("encoding", encoding)], factory: factory)
    }
    let staleness: CoreMetrics.Recorder
    let aggregationStep: CoreMetrics.Timer
    let commitDuration: CoreMetrics.Timer
    let bytesReceived: CoreMetrics.Counter
    let bytesSent: CoreMetrics.Counter
    let sessionsOpened: CoreMetrics.Counter
    /// Sessions that a newer session of the same client id replaced (a reconnect, or a copied certificate).
    let sessionsReplaced: CoreMetrics.Counter
    /// Updates whose delta the adaptive norm bound scaled down.
    let updatesClipped: CoreMetrics.Counter
    /// The divergence guard's factor on the configured server step (1 until it lowers it).
    let serverStepScale: CoreMetrics.Gauge

    public static var disabled: CoordinatorMetrics { CoordinatorMetrics(factory: NOOPMetricsHandler.instance, registry: nil) }

    public static func prometheus() -> CoordinatorMetrics {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.valueHistogramBuckets["strata_update_staleness"] = [0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144]
        let fine: [Duration] = [.microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
                                .milliseconds(2.5), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50),
                                .milliseconds(100), .milliseconds(250), .seconds(1)]
        factory.durationHistogramBuckets["strata_aggregation_step_seconds"] = fine
        factory.durationHistogramBuckets["strata_commit_seconds"] = fine
        return CoordinatorMetrics(factory: factory, registry: registry)
    }

    init(factory: any MetricsFactory, registry: PrometheusCollectorRegistry?) {
        self.factory = factory
        self.registry = registry
        updatesReceived = CoreMetrics.Counter(label: "strata_updates_received_total", factory: factory)
        updatesAccepted = CoreMetrics.Counter(label: "strata_updates_accepted_total", factory: factory)
        staleness = CoreMetrics.Recorder(label: "strata_update_staleness", aggregate: true, factory: factory)
        aggregationStep = CoreMetrics.Timer(label: "strata_aggregation_step_seconds", factory: factory)
        commitDuration = CoreMetrics.Timer(label: "strata_commit_seconds", factory: factory)
        bytesReceived = CoreMetrics.Counter(label: "strata_agent_bytes_received_total", factory: factory)
        bytesSent = CoreMetrics.Counter(label: "strata_agent_bytes_sent_total", factory: factory)
        sessionsOpened = CoreMetrics.Counter(label: "strata_sessions_opened_total", factory: factory)
        sessionsReplaced = CoreMetrics.Counter(label: "strata_sessions_replaced_total", factory: factory)
        updatesClipped = CoreMetrics.Counter(label: "strata_updates_clipped_total", factory: factory)
        serverStepScale = CoreMetrics.Gauge(label: "strata_server_step_scale", factory: factory)
        serverStepScale.record(1)
        // Series that exist before their first event, so a scrape shows 0 rather than nothing.
        updatesRefused(code: "too-stale").increment(by: 0)
        handshakeFailures(endpoint: "agents", reason: "handshake-failed").increment(by: 0)
        for cause in ["loss-rose", "non-finite-loss", "non-finite-model", "refusals"] {
            divergenceRecoveries(cause: cause).increment(by: 0)
        }
    }

    /// Times the divergence guard stepped the models back, by cause.
    func divergenceRecoveries(cause: String) -> CoreMetrics.Counter {
        CoreMetrics.Counter(label: "strata_divergence_recoveries_total", dimensions: [("cause", cause)], factory: factory)
    }

    func updatesRefused(code: String) -> CoreMetrics.Counter {
        CoreMetrics.Counter(label: "strata_updates_refused_total", dimensions: [("reason", code)], factory: factory)
    }

    /// `endpoint`: agents or admin.
    func handshakeFailures(endpoint: String, reason: String) -> CoreMetrics.Counter {
        CoreMetrics.Counter(label: "strata_tls_handshake_failures_total", dimensions: [("endpoint", endpoint), ("reason", reason)], factory: factory)
    }

    func gauge(_ label: String, _ dimensions: [(String, String)] = []) -> CoreMetrics.Gauge {
        CoreMetrics.Gauge(label: label, dimensions: dimensions, factory: factory)
    }

    /// The gauge of a pooled evaluation metric: strata_evaluation_ and its name with '-' as '_'.
    static func evaluationGauge(_ metric: String) -> String {
        "strata_evaluation_" + metric.replacingOccurrences(of: "-", with: "_")
    }

    /// Renders the registry in the Prometheus text exposition format (version 0.0.4).
    public func render() -> [UInt8] {
        guard let registry else { return [] }
        var buffer: [UInt8] = []
        registry.emit(into: &buffer)
        return buffer
    }
}

/// The gauges `/metrics` refreshes from the coordinator's state on each scrape.
public struct GaugeSnapshot: Sendable {
    public var globalVersion: Int64
    public var latestAccuracy: Double?
    /// The latest evaluation's pooled metrics by name (rmse, mae, r2, macro-f1, auc).
    public var latestMetrics: [String: Double] = [:]
    public var ready: Bool
    public var connectedClients: Int
    public var clientsByHealth: [String: Int]
    /// tier → (version, size, updates per second).
    public var tiers: [(tier: Int, version: Int64, size: Int, updateRate: Double, weight: Double?)]
}

extension CoordinatorMetrics {
    func apply(_ snapshot: GaugeSnapshot) {
        gauge("strata_global_version").record(snapshot.globalVersion)
        if let accuracy = snapshot.latestAccuracy { gauge("strata_global_accuracy").record(accuracy) }
        // strata_evaluation_rmse, _mae, _r2, _macro_f1, _auc: set once an evaluation reports them (a scrape
        // before that, or of a model they do not apply to, has no such series).
        for (name, value) in snapshot.latestMetrics where value.isFinite {
            gauge(Self.evaluationGauge(name)).record(value)
        }
        gauge("strata_ready").record(snapshot.ready ? 1 : 0)
        gauge("strata_connected_clients").record(snapshot.connectedClients)
        for state in ["healthy", "suspect", "lost", "evicted", "unknown"] {
            gauge("strata_clients", [("state", state)]).record(snapshot.clientsByHealth[state] ?? 0)
        }
        for tier in snapshot.tiers {
            let label = [("tier", String(tier.tier))]
            gauge("strata_tier_version", label).record(tier.version)
            gauge("strata_tier_size", label).record(tier.size)
            gauge("strata_tier_update_rate", label).record(tier.updateRate)
            if let weight = tier.weight { gauge("strata_tier_weight", label).record(weight) }
        }
    }
}
