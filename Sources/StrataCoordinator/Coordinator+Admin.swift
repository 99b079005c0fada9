import Foundation
import Logging
import StrataCore
import StrataStore
import StrataWire

/// A refused admin request: what went wrong and what to do next. Maps to an HTTP status on the admin port.
public struct AdminError: Error, Sendable, Hashable, CustomStringConvertible {
    public enum Kind: String, Sendable, Hashable {
        case badRequest = "bad-request"
        case notFound = "not-found"
        case conflict
        case notReady = "not-ready"
        case internalError = "internal-error"
        /// The certificate's role may not do this (a viewer asking for an action).
        case forbidden
    }
    public var kind: Kind
    public var message: String
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }
    public var description: String { "\(kind.rawValue): \(message)" }
}

/// The admin API's reads and actions. Reads combine live state (sessions, tiers, health) with the durable
/// history; every action that changes something writes an audit row, also when it is refused.
extension Coordinator {
    // MARK: Reads

    public func status() async throws -> StatusReport {
        let totals = try await store.summary()
        let clients = try await store.clients()
        return StatusReport(
            mode: configuration.aggregation.mode.rawValue, globalVersion: rule.globalVersion,
            latestAccuracy: reportsAccuracy ? lastEvaluation?.accuracy : nil, latestEvaluatedVersion: lastEvaluation?.version,
            bestAccuracy: reportsAccuracy ? bestAccuracy : nil,
            targetAccuracy: configuration.stop.targetAccuracy, uptimeSeconds: elapsed, ready: isReady, draining: draining,
            connectedClients: sessions.count, clientsByHealth: healthCounts(known: clients.map(\.id)),
            tiers: tierReports(), updatesAccepted: totals.committedUpdates, updatesRefused: totals.refusedUpdates,
            best: bestRecord.map(Self.report), targetMetric: configuration.stop.targetMetric.name, target: configuration.stop.target,
            minClients: configuration.minClients, waitingForClients: !trainingStarted,
            model: configuration.model.kind.rawValue, latestMetrics: lastEvaluation.flatMap { $0.metrics.isEmpty ? nil : $0.metrics },
            bestScoreSeen: progress.record)
    }

    /// The evaluation curve: the newest `limit` closed rounds, with answered / asked agents and whether each counted.
    public func evaluationsReport(limit: Int) async throws -> EvaluationsReport {
        await flushEvaluationWrites()
        let rounds = try await store.evaluationRounds(limit: limit)
        return EvaluationsReport(targetMetric: configuration.stop.targetMetric.name, entries: rounds.map {
            EvaluationEntry(version: $0.version, accuracy: $0.accuracy, loss: $0.loss, answered: $0.answered, asked: $0.asked,
                            required: $0.required, counted: $0.counted, metric: $0.metric, score: $0.score, best: $0.best,
                            versionCreatedAt: $0.versionCreatedAt, at: $0.at, metrics: $0.metrics, statisticsAnswered: $0.statisticsAnswered)
        }, model: configuration.model.kind.rawValue)
    }

    /// Which version `best`, `latest` or a number names, for `export-model`.
    public enum ModelSelector: Sendable, Hashable {
        case best
        case latest
        case version(Int64)
    }

    public func modelParameters(_ selector: ModelSelector) async throws -> ModelParameters {
        switch selector {
        case .version(let version):
            return try await modelParameters(version: version)
        case .latest:
            return try await modelParameters(version: lastCommitted.version)
        case .best:
            guard let best = bestRecord else {
                let metric = configuration.stop.targetMetric
                throw AdminError(.notFound, "no best version yet: no evaluation has counted for \(metric.name) (a round counts when enough of the agents it asked answer; `stratactl evaluations` shows each round's answered/asked)")
            }
            return try await modelParameters(version: best.version)
        }
    }

    public func tiersReport() async -> TiersReport {
        let assigned = Set(tiers.assignment.keys)
        let unassigned = Set(sessions.keys).union(profiles.keys).subtracting(assigned).subtracting(evicted.keys).sorted()
        return TiersReport(formed: tiers.isFormed, tiers: tierReports(), unassigned: unassigned)
    }

    public func clientsReport(tier: Int?, state: String?) async throws -> ClientsReport {
        let rows = try await store.clients()
        let summaries = rows.map(clientSummary).filter { summary in
            (tier == nil || summary.tier == tier) && (state == nil || summary.health == state)
        }
        return ClientsReport(clients: summaries)
    }

    public func clientDetail(id: String, limit: Int = 50) async throws -> ClientDetail {
        guard let row = try await store.client(id: id) else {
            throw AdminError(.notFound, "no client '\(id)' has ever connected; `stratactl clients` lists the known ones")
        }
        let updates = try await store.committedUpdates(clientID: id, limit: limit).map {
            UpdateEntry(taskID: $0.taskID, version: $0.version, tier: $0.lane, staleness: $0.staleness, weight: $0.weight,
                        sampleCount: $0.sampleCount, latencySeconds: $0.latencySeconds, receivedAt: $0.receivedAt)
        }
        let refusals = try await store.refusals(clientID: id, limit: limit).map {
            RefusalEntry(taskID: $0.taskID, code: ErrorCode(rawValue: UInt16(clamping: $0.code)).name, reason: $0.reason, at: $0.at)
        }
        let moves = try await store.tierMoves(clientID: id).suffix(limit).reversed().map {
            TierMoveEntry(from: $0.fromTier, to: $0.toTier, reason: $0.reason, latencySeconds: $0.latencySeconds, at: $0.at)
        }
        let events = try await store.healthEvents(clientID: id).suffix(limit).reversed().map {
            HealthEventEntry(from: $0.fromState, to: $0.toState, reason: $0.reason, at: $0.at)
        }
        return ClientDetail(client: clientSummary(row), updates: updates, refusals: refusals, tierMoves: Array(moves), healthEvents: Array(events))
    }

    public func modelsReport(limit: Int) async throws -> ModelsReport {
        let versions = try await store.latestModelVersions(limit: limit)
        let accuracies = try await store.accuracies(versions: versions.map(\.version))
        let global = versions.map { v in
            ModelEntry(version: v.version, createdAt: v.createdAt, trigger: v.trigger, tier: v.lane,
                       tierVersions: Self.parseJSONNumbers(v.laneVersions).map { Int64($0) }, tierWeights: Self.parseJSONNumbers(v.laneWeights),
                       updateCount: v.updateCount, meanStaleness: v.meanStaleness,
                       accuracy: reportsAccuracy ? accuracies[v.version]?.accuracy : nil, evaluatedBy: accuracies[v.version]?.clients ?? 0,
                       parametersKept: v.parameterBytes > 0)
        }
        let lanes = try await store.latestLaneVersions(limit: limit).map {
            TierModelEntry(tier: $0.lane, version: $0.version, createdAt: $0.createdAt, globalVersion: $0.globalVersion)
        }
        return ModelsReport(global: global, tiers: lanes)
    }

    public func modelParameters(version: Int64) async throws -> ModelParameters {
        guard let record = try await store.modelVersion(version) else {
            throw AdminError(.notFound, "no global model version \(version); the latest is \(rule.globalVersion) (`stratactl models` lists them)")
        }
        let spec = configuration.model
        if record.parameters.isEmpty {
            let retention = configuration.modelRetention
            throw AdminError(.notFound, "the parameters of model version \(version) were not kept: this coordinator keeps the newest \(retention.latest) versions'"
                             + (retention.every > 0 ? " and every \(retention.every)-th" : "")
                             + " (--keep-models, --keep-every); `stratactl models` shows which versions have them")
        }
        guard let values = FloatBlob.decode(record.parameters), values.count == spec.parameterCount else {
            throw AdminError(.internalError, "model version \(version) has a damaged parameter blob in the state database")
        }
        var tensors: [ModelParameters.Tensor] = []
        var offset = 0
        for (name, shape) in spec.tensorShapes {
            let count = shape.reduce(1, *)
            let bytes = values[offset..<offset + count].withUnsafeBytes { Data($0) }   // little-endian on every supported platform
            tensors.append(ModelParameters.Tensor(name: name, shape: shape, dtype: "float32", data: bytes.base64EncodedString()))
            offset += count
        }
        let accuracy = reportsAccuracy ? try await store.accuracies(versions: [version])[version]?.accuracy : nil
        let metric = configuration.stop.targetMetric
        await flushEvaluationWrites()
        // This version's score: the best's as recorded, else its latest counted round's.
        let round = bestRecord?.version == version ? nil : try await store.countedRound(version: version, metric: metric.name)
        let best = bestRecord.map(Self.report)
        let own = best?.version == version ? best : nil
        return ModelParameters(version: version, model: spec.kind.rawValue, features: spec.featureCount, outputs: spec.outputCount,
                               createdAt: record.createdAt, accuracy: accuracy, tensors: tensors, preprocessing: preprocessing,
                               metric: metric.name, score: own?.score ?? round?.score, answered: own?.answered ?? round?.answered,
                               asked: own?.asked ?? round?.asked, best: best, architecture: spec.kind == .mlp ? spec.summary : nil)
    }

    public func auditReport(limit: Int) async throws -> AuditReport {
        let rows = try await store.auditLog(limit: limit)
        return AuditReport(entries: rows.map {
            AuditEntry(id: $0.id ?? 0, at: $0.at, actor: $0.actor, action: $0.action, target: $0.target, detail: $0.detail, result: $0.result)
        })
    }

    // MARK: Actions (each audited)

    /// Re-plans the tiers from the current latency profiles now, without hysteresis.
    public func retier(actor: String) async throws -> ActionResult {
        try await audited(actor: actor, action: "retier", target: "tiers", detail: "") {
            guard configuration.aggregation.mode.usesTiers else {
                throw AdminError(.conflict, "mode \(configuration.aggregation.mode.rawValue) has no tiers")
            }
            guard tiers.isFormed else {
                throw AdminError(.conflict, "tiers are not formed yet: they form once the connected agents are profiled")
            }
            let moves = tiers.retier(latencies: profiledLatencies.filter { evicted[$0.key] == nil })
            lastRetier = .now
            try await persistTierMoves(moves)
            return ActionResult(action: "retier", target: "tiers", message: moves.isEmpty ? "tiers already match the latencies; nothing moved" : "\(moves.count) client(s) moved",
                                moves: moves.map { ActionMove(client: $0.clientID, from: $0.from, to: $0.to) })
        }
    }

    public func pin(clientID: String, tier: Int, actor: String) async throws -> ActionResult {
        try await audited(actor: actor, action: "pin", target: clientID, detail: "tier \(tier)") {
            guard configuration.aggregation.mode.usesTiers else {
                throw AdminError(.conflict, "mode \(configuration.aggregation.mode.rawValue) has no tiers")
            }
            guard tier >= 0 else { throw AdminError(.badRequest, "tier must be >= 0") }
            if tiers.isFormed, tier >= tiers.tierCount {
                throw AdminError(.conflict, "there are \(tiers.tierCount) tiers (0...\(tiers.tierCount - 1)); pick one of them")
            }
            try await requireKnown(clientID)
            let move = try await pin(clientID: clientID, tier: tier)
            return ActionResult(action: "pin", target: clientID,
                                message: move.map { "moved from tier \($0.from.map(String.init) ?? "-") to \($0.to) and pinned" }
                                    ?? (tiers.isFormed ? "pinned to tier \(tier)" : "pinned; applied when tiers form"),
                                moves: move.map { [ActionMove(client: $0.clientID, from: $0.from, to: $0.to)] } ?? [])
        }
    }

    public func unpin(clientID: String, actor: String) async throws -> ActionResult {
        try await audited(actor: actor, action: "unpin", target: clientID, detail: "") {
            try await requireKnown(clientID)
            guard tiers.pins[clientID] != nil else { throw AdminError(.conflict, "client \(clientID) is not pinned") }
            tiers.unpin(clientID)
            try await store.recordPin(clientID: clientID, tier: nil)
            return ActionResult(action: "unpin", target: clientID, message: "unpinned; re-tiering may move it again")
        }
    }

    /// Ends the client's session and refuses its certificate until `admit`.
    public func evict(clientID: String, reason: String, actor: String) async throws -> ActionResult {
        let detail = reason
        return try await audited(actor: actor, action: "evict", target: clientID, detail: detail, writesOwnAudit: true) {
            guard !reason.trimmingCharacters(in: .whitespaces).isEmpty else { throw AdminError(.badRequest, "an eviction needs a reason (--reason)") }
            try await requireKnown(clientID)
            guard evicted[clientID] == nil else { throw AdminError(.conflict, "client \(clientID) is already evicted; `stratactl admit \(clientID)` re-admits it") }
            let eviction = StoredEviction(at: Self.now(), by: actor, reason: reason)
            try await store.recordEviction(clientID: clientID, eviction: eviction,
                                           audit: AuditRecord(at: eviction.at, actor: actor, action: "evict", target: clientID, detail: detail, result: "ok"))
            evicted[clientID] = eviction
            let session = forgetSession(of: clientID)
            let wasConnected = session != nil
            session?.finish(with: .error(ErrorMessage(code: .evicted, message:
                "evicted by operator \(actor): \(reason). Your certificate is refused until an operator runs `stratactl admit \(clientID)`")))
            if tiers.pins[clientID] != nil { try await store.recordPin(clientID: clientID, tier: nil) }
            tiers.remove(clientID)
            health.remove(clientID)
            logger.notice("client evicted", metadata: ["client": "\(clientID)", "by": "\(actor)", "reason": "\(reason)"])
            await aggregateAndDispatch()
            return ActionResult(action: "evict", target: clientID,
                                message: "evicted\(wasConnected ? "; its session was closed" : ""); its certificate is refused until `stratactl admit \(clientID)`")
        }
    }

    public func readmit(clientID: String, actor: String) async throws -> ActionResult {
        try await audited(actor: actor, action: "admit", target: clientID, detail: "", writesOwnAudit: true) {
            guard evicted[clientID] != nil else { throw AdminError(.conflict, "client \(clientID) is not evicted") }
            try await store.recordEviction(clientID: clientID, eviction: nil,
                                           audit: AuditRecord(at: Self.now(), actor: actor, action: "admit", target: clientID, detail: "", result: "ok"))
            evicted[clientID] = nil
            logger.notice("client re-admitted", metadata: ["client": "\(clientID)", "by": "\(actor)"])
            return ActionResult(action: "admit", target: clientID, message: "re-admitted; the agent may connect again")
        }
    }

    // MARK: Metrics

    public func gaugeSnapshot() async -> GaugeSnapshot {
        let known = (try? await store.clients().map(\.id)) ?? Array(sessions.keys)
        return GaugeSnapshot(globalVersion: rule.globalVersion, latestAccuracy: reportsAccuracy ? lastEvaluation?.accuracy : nil,
                             latestMetrics: lastEvaluation?.metrics ?? [:], ready: isReady,
                             connectedClients: sessions.count, clientsByHealth: healthCounts(known: known),
                             tiers: tierReports().map { ($0.tier, $0.version, $0.members.count, $0.updateRate, $0.weight) })
    }

    // MARK: Helpers

    /// A linear model's evaluation reports accuracy 0: status and metrics leave it out (RMSE, MAE, R² instead).
    var reportsAccuracy: Bool { configuration.model.isClassifier }

    func tierReports() -> [TierReport] {
        let now = elapsed
        if !tiers.isFormed {
            // Untiered modes (and strata before formation) have one lane: the global model.
            guard !configuration.aggregation.mode.usesTiers else { return [] }
            return [TierReport(tier: 0, members: sessions.keys.sorted(), latencyMin: nil, latencyMax: nil, version: rule.lane(0).version,
                               updateRate: laneRates[0]?.rate(at: now) ?? 0, weight: nil)]
        }
        return (0..<tiers.tierCount).map { t in
            let members = tiers.members(of: t)
            let latencies = members.compactMap { profiles[$0]?.smoothedSeconds }
            return TierReport(tier: t, members: members, latencyMin: latencies.min(), latencyMax: latencies.max(),
                              version: t < rule.laneCount ? rule.lane(t).version : 0,
                              updateRate: laneRates[t]?.rate(at: now) ?? 0,
                              weight: t < lastLaneWeights.count ? lastLaneWeights[t] : nil)
        }
    }

    func healthCounts(known: [String]) -> [String: Int] {
        var counts: [String: Int] = [:]
        for id in Set(known).union(sessions.keys) {
            counts[healthState(of: id), default: 0] += 1
        }
        return counts
    }

    func healthState(of clientID: String) -> String {
        if evicted[clientID] != nil { return "evicted" }
        return health.clients[clientID]?.state.rawValue ?? "unknown"
    }

    func clientSummary(_ row: ClientRecord) -> ClientSummary {
        let live = health.clients[row.id]
        let profile = profiles[row.id]
        return ClientSummary(
            id: row.id, connected: sessions[row.id] != nil, health: healthState(of: row.id),
            healthSince: live.map { wallStart + $0.since } ?? row.healthSince, healthReason: live?.reason ?? row.healthReason,
            tier: tiers.tier(of: row.id), pinnedTier: tiers.pins[row.id],
            latencySeconds: profile?.smoothedSeconds ?? row.latencySeconds, lastLatencySeconds: profile?.lastSeconds ?? row.lastLatencySeconds,
            latencySamples: profile.map { Int64($0.sampleCount) } ?? row.latencySamples,
            updatesAccepted: row.updatesAccepted, updatesRefused: row.updatesRefused, sessions: row.sessions,
            firstSeen: row.firstSeen, lastSeen: row.lastSeen, agentVersion: row.agentVersion, trainSamples: row.trainSamples,
            lastError: row.lastError, eviction: evicted[row.id].map { EvictionInfo(at: $0.at, by: $0.by, reason: $0.reason) })
    }

    private func requireKnown(_ clientID: String) async throws {
        guard try await store.client(id: clientID) != nil else {
            throw AdminError(.notFound, "no client '\(clientID)' has ever connected; `stratactl clients` lists the known ones")
        }
    }

    /// Audits an action refused before it ran (a viewer certificate asking for a change).
    public func auditRefusal(actor: String, action: String, target: String, error: AdminError) async {
        try? await store.recordAudit(AuditRecord(at: Self.now(), actor: actor, action: action, target: target, detail: "", result: error.kind.rawValue))
    }

    /// Runs an action and writes its audit row: "ok", or the error's code when it is refused or fails.
    /// Actions whose effect and audit row must be one transaction write the "ok" row themselves.
    private func audited(actor: String, action: String, target: String, detail: String, writesOwnAudit: Bool = false,
                         _ body: () async throws -> ActionResult) async throws -> ActionResult {
        guard isReady else { throw AdminError(.notReady, "the coordinator is restoring its state or stopping; retry shortly") }
        do {
            let result = try await body()
            if !writesOwnAudit {
                try await store.recordAudit(AuditRecord(at: Self.now(), actor: actor, action: action, target: target, detail: detail, result: "ok"))
            }
            return result
        } catch {
            let code = (error as? AdminError)?.kind.rawValue ?? "internal-error"
            try? await store.recordAudit(AuditRecord(at: Self.now(), actor: actor, action: action, target: target, detail: detail, result: code))
            if error is AdminError { throw error }
            throw AdminError(.internalError, "\(error)")
        }
    }

    static func parseJSONNumbers(_ text: String) -> [Double] {
        text.trimmingCharacters(in: CharacterSet(charactersIn: "[] ")).split(separator: ",").compactMap {
            Double($0.trimmingCharacters(in: .whitespaces))
        }
    }
}
