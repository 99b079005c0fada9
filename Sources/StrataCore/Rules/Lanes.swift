// Building blocks shared by the rules: a lane (one model being trained, with its buffer), the set of
// lanes with the global model and FedAT's cross-tier combination, and one synchronous round.

/// One model being trained: a tier's model, or the only model of a flat rule.
public struct Lane: Sendable {
    public internal(set) var version: Int64
    public internal(set) var parameters: [Float]
    /// T_i: pushes into the global model, counted from 1 so that no cross-tier weight is zero.
    public internal(set) var pushes: Int64
    var accumulator: WeightedAccumulator
    var folded: [FoldedUpdate] = []
    var optimizerState: ServerOptimizerState
    /// When the open buffer received its first update (for the buffer timeout).
    var bufferOpenedAt: Double?
    /// False while the lane has no connected member: it is left out of the global combination.
    public internal(set) var isActive = true
    /// Robust folds keep the open buffer's (clipped) deltas end to end; the mean needs none.
    var kept: [Float] = []
    /// Updates that arrived while their agent already had one in the open buffer: folded into the next one.
    var queued: [RuleUpdate] = []
    /// Deltas folded before the adaptive bound could be trusted: held whole, and clipped when the buffer
    /// steps by the bound known then (their own norms included), so the fastest few agents cannot set it.
    var deferred: [DeferredDelta] = []
    /// Updates based on an older version than this are refused: the divergence guard stepped the lane back
    /// from the models they started from.
    var oldestBase: Int64 = 0

    init(version: Int64, parameters: [Float], pushes: Int64 = 1, optimizerState: ServerOptimizerState) {
        self.version = version
        self.parameters = parameters
        self.pushes = pushes
        accumulator = WeightedAccumulator(parameterCount: parameters.count)
        self.optimizerState = optimizerState
    }

    /// The optimiser state this lane keeps (for tests and for the memory bound).
    public var serverOptimizerState: ServerOptimizerState { optimizerState }

    public var bufferedCount: Int { folded.count }

    var state: LaneState { LaneState(version: version, parameters: parameters, pushes: pushes) }

    /// Folds `delta` with weight `samples · s(σ)`, σ counted in this lane's versions, scaled by `clip` (the
    /// adaptive norm bound's factor, 1 when within it; nil: not known yet, the delta waits in `deferred` for
    /// the step). With `robustness.onePerBuffer`, an agent's second update waits for the next buffer and a
    /// third is refused.
    mutating func fold(_ update: RuleUpdate, staleness function: StalenessFunction, maxStaleness: Int, now: Double,
                       robustness: Robustness, clip: Float?) -> UpdateDisposition {
        if let refusal = refusalAfterRollback(update) { return refusal }
        let sigma = max(0, version - update.baseVersion)
        guard sigma <= Int64(maxStaleness) else {
            return .refused(.tooStale, "based on version \(update.baseVersion), \(sigma) versions behind (limit \(maxStaleness))")
        }
        let weight = Double(update.sampleCount) * function.factor(staleness: Int(sigma))
        if robustness.onePerBuffer, folded.contains(where: { $0.clientID == update.clientID }) {
            guard !queued.contains(where: { $0.clientID == update.clientID }) else {
                return .refused(.overShare, "client \(update.clientID) already has an update in this tier's open buffer and one queued for the next")
            }
            queued.append(update)
            return .folded(staleness: sigma + 1, weight: weight)
        }
        do {
            if clip == nil {
                guard update.delta.count == accumulator.parameterCount else {
                    throw StrataCoreError.shapeMismatch(expected: accumulator.parameterCount, actual: update.delta.count)
                }
                guard weight.isFinite, weight > 0 else { throw StrataCoreError.invalidArgument("weight \(weight) must be finite and > 0") }
                deferred.append(DeferredDelta(delta: update.delta, norm: update.norm, weight: weight))
            } else if robustness.fold.keepsDeltas {
                guard update.delta.count == accumulator.parameterCount else {
                    throw StrataCoreError.shapeMismatch(expected: accumulator.parameterCount, actual: update.delta.count)
                }
                guard weight.isFinite, weight > 0 else { throw StrataCoreError.invalidArgument("weight \(weight) must be finite and > 0") }
                let n = accumulator.parameterCount, start = kept.count
                kept.append(contentsOf: repeatElement(0, count: n))
                kept.withUnsafeMutableBufferPointer { all in
                    let row = UnsafeMutableBufferPointer(rebasing: all[start..<(start + n)])
                    update.delta.add(into: row)
                    if let clip, clip < 1 { for i in row.indices { row[i] *= clip } }
                }
            } else {
                try accumulator.add(update.delta, weight: Float(weight), scale: clip ?? 1)
            }
        } catch {
            return .refused(.invalid, "cannot aggregate: \(error)")
        }
        if folded.isEmpty { bufferOpenedAt = now }
        folded.append(FoldedUpdate(taskID: update.taskID, clientID: update.clientID, baseVersion: update.baseVersion,
                                   staleness: sigma, weight: weight))
        return .folded(staleness: sigma, weight: weight)
    }

    /// An update trained on a model the divergence guard stepped back from is refused as too stale.
    func refusalAfterRollback(_ update: RuleUpdate) -> UpdateDisposition? {
        guard update.baseVersion < oldestBase else { return nil }
        return .refused(.tooStale, "based on version \(update.baseVersion), a model the divergence guard stepped back from (tier version \(oldestBase) restored the best model)")
    }

    /// Folds the deferred deltas, each clipped to `bound` (nil: as they are).
    mutating func settle(bound: Double?, fold: BufferFold) {
        for held in deferred {
            let clip = AgentNorms.scale(norm: held.norm, bound: bound)
            if fold.keepsDeltas {
                let n = accumulator.parameterCount, start = kept.count
                kept.append(contentsOf: repeatElement(0, count: n))
                kept.withUnsafeMutableBufferPointer { all in
                    let row = UnsafeMutableBufferPointer(rebasing: all[start..<(start + n)])
                    held.delta.add(into: row)
                    if clip < 1 { for i in row.indices { row[i] *= clip } }
                }
            } else {
                // Checked when it was deferred: same length, finite weight > 0, clip in (0, 1].
                try! accumulator.add(held.delta, weight: Float(held.weight), scale: clip)
            }
        }
        deferred.removeAll()
    }

    /// The lane's model steps by the server optimiser with Δ̄ the buffer's weighted mean (or its robust
    /// combination); empties the buffer. Returns its updates; `queued` still holds the updates waiting for
    /// the next buffer.
    mutating func step(optimizer: some ServerOptimizer, fold: BufferFold) -> [FoldedUpdate] {
        if !kept.isEmpty {
            let combined = RobustCombination.combine(rows: kept, parameterCount: parameters.count, count: folded.count, fold: fold)
            accumulator.reset()
            try! accumulator.add(combined, weight: 1)   // same count, weight 1 > 0: cannot throw
            kept.removeAll(keepingCapacity: true)
        }
        parameters = accumulator.takeStep(on: parameters, optimizer: optimizer, state: &optimizerState)
        version += 1
        let updates = folded
        folded.removeAll()
        accumulator.reset()
        bufferOpenedAt = nil
        return updates
    }

    mutating func rebase(on global: [Float]) {
        parameters = global
    }
}

/// The lanes and the global model. With one lane the global model is that lane's model; with several, the
/// global model is FedAT's cross-tier combination of the active lanes' latest models.
public struct LaneSet: Sendable {
    public private(set) var lanes: [Lane]
    public private(set) var globalVersion: Int64 = 0
    public private(set) var global: [Float]
    /// How a tier's push changes the global model (only matters with more than one lane).
    public var combination: CrossTierCombination = .models
    public var weighting: CrossTierWeighting = .fedAT
    public let robustness: Robustness
    /// Every agent's latest delta norm, over every lane: the adaptive bound's median.
    public private(set) var norms = AgentNorms()
    /// The server optimiser every lane steps with (each lane keeps its own state).
    public let optimizer: any ServerOptimizer
    /// The divergence guard's factor on the server step (η_g, and FedAsync's α): 1 until it lowers it.
    public private(set) var stepScale: Double = 1

    public init(parameters: [Float], robustness: Robustness = Robustness(),
                optimizer: any ServerOptimizer = ServerSGD()) {
        global = parameters
        self.robustness = robustness
        self.optimizer = optimizer
        lanes = []
        lanes = [newLane(version: 0, parameters: parameters)]
    }

    func newLane(version: Int64, parameters: [Float], pushes: Int64 = 1) -> Lane {
        Lane(version: version, parameters: parameters, pushes: pushes,
             optimizerState: optimizer.makeState(parameterCount: parameters.count))
    }

    /// The optimiser with the guard's step scale applied.
    var scaledOptimizer: any ServerOptimizer {
        guard stepScale != 1 else { return optimizer }
        var scaled = optimizer
        scaled.learningRate = Float(Double(optimizer.learningRate) * stepScale)
        return scaled
    }

    /// Agents connected when the rule last scheduled: the bound assumes fewer than half of them lie.
    public private(set) var connected = 0

    mutating func setConnected(_ count: Int) { connected = max(0, count) }

    /// The adaptive norm bound now (nil while off or before `minimumAgents` agents sent a delta).
    public var clipBound: Double? {
        norms.bound(multiple: robustness.clipMultiple, minimum: robustness.minimumAgents, connected: connected)
    }

    /// The factor that brings `update` within the adaptive bound, or nil while the known norms could all be
    /// liars' (the update then waits for its buffer's step, when the buffer's own norms count). Records its
    /// norm for later bounds, after the bound is taken: an update never loosens its own.
    mutating func clipScale(for update: RuleUpdate) -> Float? {
        let scale = clipScaleNow(for: update)
        norms.record(update.norm, client: update.clientID)
        return scale
    }

    private func clipScaleNow(for update: RuleUpdate) -> Float? {
        guard robustness.clipMultiple != nil else { return 1 }
        guard norms.includesAnHonestNorm(connected: connected, minimum: robustness.minimumAgents) else { return nil }
        return AgentNorms.scale(norm: update.norm, bound: clipBound)
    }

    public var count: Int { lanes.count }

    public subscript(lane: Int) -> Lane { lanes[lane] }

    func contains(_ lane: Int) -> Bool { lanes.indices.contains(lane) }

    mutating func restore(globalVersion: Int64, global: [Float], lanes restored: [LaneState]) {
        self.globalVersion = globalVersion
        self.global = global
        lanes.removeAll()   // their accumulators go before the new lanes' are allocated
        // Optimiser state is not persisted: every lane starts afresh (m = 0, v = τ²), as on a first start.
        if restored.isEmpty {
            lanes = [newLane(version: globalVersion, parameters: global)]
        } else {
            lanes = restored.map { newLane(version: $0.version, parameters: $0.parameters, pushes: max(1, $0.pushes)) }
        }
        // With delta combination every tier continues from the global model.
        if combination == .deltas { for i in lanes.indices { lanes[i].rebase(on: global) } }
    }

    /// Grows to `count` lanes; new lanes start from the current global model.
    /// Forming tiers restarts every push count at 1: the counts describe how often each tier updates,
    /// and the pushes made before tiers existed belong to no tier.
    mutating func ensure(count: Int) {
        guard lanes.count < count else { return }
        let forming = lanes.count == 1
        while lanes.count < count { lanes.append(newLane(version: 0, parameters: global)) }
        // Restored tiers keep their counts; only the first formation restarts them.
        if forming { for i in lanes.indices { lanes[i].pushes = 1 } }
    }

    mutating func fold(_ update: RuleUpdate, staleness: StalenessFunction, maxStaleness: Int, now: Double) -> UpdateDisposition {
        guard contains(update.lane) else { return .refused(.invalid, "lane \(update.lane) does not exist") }
        let scale = clipScale(for: update)
        return lanes[update.lane].fold(update, staleness: staleness, maxStaleness: maxStaleness, now: now,
                                       robustness: robustness, clip: scale)
    }

    /// Whether `client` has an update queued behind an open buffer. Such an agent gets no new task until
    /// that buffer steps: a fast agent waits instead of training work that could only be refused.
    func isWaiting(_ client: String) -> Bool {
        lanes.contains { $0.queued.contains { $0.clientID == client } }
    }

    /// A buffer rule's step: steps `lane`, pushes it up, and opens the next buffer with the updates that
    /// waited for it.
    mutating func stepBuffer(_ lane: Int, settings: RuleSettings, trigger: String, now: Double) -> AggregationOutcome {
        let outcome = stepAndPush(lane, trigger: trigger)
        foldQueued(lane, staleness: settings.staleness, maxStaleness: settings.maxStaleness, now: now)
        return outcome
    }

    /// Folds the updates that waited for `lane`'s next buffer (after a step). One that became too stale
    /// meanwhile is dropped: its agent still holds it and gets `too-stale` when it sends it again.
    mutating func foldQueued(_ lane: Int, staleness: StalenessFunction, maxStaleness: Int, now: Double) {
        let waiting = lanes[lane].queued
        lanes[lane].queued.removeAll()
        for update in waiting {
            _ = lanes[lane].fold(update, staleness: staleness, maxStaleness: maxStaleness, now: now,
                                 robustness: robustness, clip: clipScaleNow(for: update))
        }
    }

    /// Folds an update into a synchronous round (s ≡ 1: all of its updates started from the round's model)
    /// if the round takes it; `round` is nil when none is open.
    mutating func fold(_ update: RuleUpdate, into round: inout SyncRound?, now: Double, closed: String) -> UpdateDisposition {
        guard var open = round, open.accepts(update, now: now) else { return .refused(.roundClosed, closed) }
        let disposition = fold(update, staleness: .constant, maxStaleness: Int.max, now: now)
        if case .folded = disposition { open.received += 1 }
        open.awaiting.remove(update.clientID)
        round = open
        return disposition
    }

    /// Marks which lanes have connected members. A lane that comes back rebases on the current global
    /// model: its own model stopped while the others moved on.
    mutating func setActive(_ active: Set<Int>) {
        for i in lanes.indices {
            let now = active.contains(i)
            if now, !lanes[i].isActive, lanes.count > 1 { lanes[i].rebase(on: global) }
            lanes[i].isActive = now
        }
    }

    /// FedAT's cross-tier weights over the active lanes (ordered fastest first): the k-th fastest gets
    /// the k-th slowest's push count, w = T_mirror / Σ T. Inactive lanes get 0. One lane: [1].
    public func crossTierWeights() -> [Double] {
        var active = lanes.indices.filter { lanes[$0].isActive }
        if active.isEmpty { active = Array(lanes.indices) }
        switch weighting {
        case .fedAT: return Self.fedATWeights(pushes: lanes.map(\.pushes), active: active)
        case .inverse: return Self.inverseWeights(pushes: lanes.map(\.pushes), active: active, members: members)
        }
    }

    /// w_i = (m_i/T_i) / Σ_j (m_j/T_j) over `active`, m_i the tier's connected members (1 when unknown):
    /// every live tier contributes per unit of time in proportion to its agents, so every agent counts
    /// alike whatever its speed — and two fast agents in a tier of their own (honest or lying) weigh two
    /// agents' worth, not a whole tier's.
    public static func inverseWeights(pushes: [Int64], active: [Int], members: [Int: Int] = [:]) -> [Double] {
        var weights = [Double](repeating: 0, count: pushes.count)
        func share(_ lane: Int) -> Double { Double(max(1, members[lane] ?? 1)) / Double(max(1, pushes[lane])) }
        let total = active.reduce(0.0) { $0 + share($1) }
        guard total > 0 else { return weights }
        for lane in active { weights[lane] = share(lane) / total }
        return weights
    }

    /// Connected members per lane (the tiered rules set it when they schedule).
    public private(set) var members: [Int: Int] = [:]

    mutating func setMembers(_ counts: [Int: Int]) { members = counts }

    /// x = Σ_i (T_{M+1−i} / T) x_i over `active` (sorted fastest first); weights for other lanes are 0.
    public static func fedATWeights(pushes: [Int64], active: [Int]) -> [Double] {
        var weights = [Double](repeating: 0, count: pushes.count)
        let order = active.sorted()
        let total = order.reduce(0.0) { $0 + Double(pushes[$1]) }
        guard total > 0 else { return weights }
        for (k, lane) in order.enumerated() {
            weights[lane] = Double(pushes[order[order.count - 1 - k]]) / total
        }
        return weights
    }

    /// Steps `lane` from its buffer and pushes the result up; returns the outcome to persist.
    mutating func stepAndPush(_ lane: Int, trigger: String) -> AggregationOutcome {
        let before = lanes[lane].parameters
        if !lanes[lane].deferred.isEmpty { lanes[lane].settle(bound: clipBound, fold: robustness.fold) }
        let updates = lanes[lane].step(optimizer: scaledOptimizer, fold: robustness.fold)
        return push(lane, from: before, updates: updates, trigger: trigger)
    }

    /// The global model after `lane` changed from `before`. One lane: the lane's model is the global model.
    /// Several: T_lane += 1 and FedAT's cross-tier weights w over the active lanes, then
    /// - `.models` (FedAT): x = Σ_i w_i·x_i, and the pushing lane continues from x;
    /// - `.deltas` (Strata): x ← x + A·w_lane·(x_lane − before) with A the number of active lanes, and every
    ///   lane continues from x.
    mutating func push(_ lane: Int, from before: [Float], updates: [FoldedUpdate], trigger: String) -> AggregationOutcome {
        let laneVersion = lanes[lane].version
        let laneParameters = lanes[lane].parameters
        var weights: [Double] = [1]
        if lanes.count == 1 {
            global = lanes[0].parameters
        } else if combination == .deltas {
            lanes[lane].pushes += 1
            lanes[lane].isActive = true
            weights = crossTierWeights()
            // Normalised so the heaviest (least frequent) live tier's step enters at full size: no tier's
            // step is ever amplified, the frequent tiers' steps are scaled down.
            let heaviest = weights.max() ?? 1
            let scale = Float(heaviest > 0 ? weights[lane] / heaviest : 1)
            let after = lanes[lane].parameters
            for j in global.indices { global[j] += scale * (after[j] - before[j]) }
            for i in lanes.indices { lanes[i].rebase(on: global) }
        } else {
            lanes[lane].pushes += 1
            lanes[lane].isActive = true
            weights = crossTierWeights()
            var combined = [Float](repeating: 0, count: global.count)
            for (i, w) in weights.enumerated() where w > 0 {
                let wf = Float(w)
                lanes[i].parameters.withUnsafeBufferPointer { x in
                    combined.withUnsafeMutableBufferPointer { out in
                        for j in 0..<out.count { out[j] += wf * x[j] }
                    }
                }
            }
            global = combined
            lanes[lane].rebase(on: combined)
        }
        globalVersion += 1
        return AggregationOutcome(lane: lane, laneVersion: laneVersion, laneParameters: laneParameters,
                                  globalVersion: globalVersion, globalParameters: global,
                                  combinedLaneVersions: lanes.map(\.version), laneWeights: weights,
                                  lanePushes: lanes[lane].pushes, updates: updates, trigger: trigger)
    }

    /// FedAsync: x_lane ← (1 − a)·x_lane + a·(x_base + Δ), a = α·s(σ). `base` is the model the client started
    /// from (nil if no longer known: the current model stands in for it).
    mutating func mix(_ update: RuleUpdate, base: [Float]?, alpha: Double, staleness function: StalenessFunction,
                      maxStaleness: Int) -> MixResult {
        guard contains(update.lane) else { return .refused(.refused(.invalid, "lane \(update.lane) does not exist")) }
        if let refusal = lanes[update.lane].refusalAfterRollback(update) { return .refused(refusal) }
        let sigma = max(0, lanes[update.lane].version - update.baseVersion)
        guard sigma <= Int64(maxStaleness) else {
            return .refused(.refused(.tooStale, "based on version \(update.baseVersion), \(sigma) versions behind (limit \(maxStaleness))"))
        }
        guard update.delta.count == global.count else {
            return .refused(.refused(.invalid, "expected \(global.count) values, got \(update.delta.count)"))
        }
        let before = lanes[update.lane].parameters
        var clientModel = base ?? before
        // Mixed at once, it cannot wait for its buffer: the bound of the others' norms, whatever they are.
        let others = clipBound
        let clip = clipScale(for: update) ?? AgentNorms.scale(norm: update.norm, bound: others)
        if clip < 1 {
            var delta = [Float](repeating: 0, count: global.count)
            delta.withUnsafeMutableBufferPointer { update.delta.add(into: $0) }
            for i in clientModel.indices { clientModel[i] += clip * delta[i] }
        } else {
            clientModel.withUnsafeMutableBufferPointer { update.delta.add(into: $0) }
        }
        let alpha = alpha * stepScale
        AggregationStep.mix(model: &lanes[update.lane].parameters, clientModel: clientModel, alpha: alpha,
                            staleness: Int(sigma), function: function)
        lanes[update.lane].version += 1
        let weight = min(1, alpha * function.factor(staleness: Int(sigma)))
        let folded = FoldedUpdate(taskID: update.taskID, clientID: update.clientID, baseVersion: update.baseVersion,
                                  staleness: sigma, weight: weight)
        return .mixed(push(update.lane, from: before, updates: [folded], trigger: "update"))
    }

    /// The divergence guard's step back: every lane's model and the global model become `parameters`, every
    /// lane's version moves on by one (updates based on an older version are refused from now on), every
    /// lane's optimiser state starts afresh, open buffers and queued updates are dropped, and the server
    /// step is `stepScale` × the configured one. `discardingFrom`: the first global version of the outcomes
    /// the caller dropped instead of persisting (the rule's versions continue from just before it), nil if
    /// it kept every outcome the rule returned. Returns one outcome per lane (each lane's restored model is
    /// persisted, as a tier step's would be) and the updates that will never be aggregated.
    mutating func rollBack(to parameters: [Float], stepScale: Double, discardingFrom: Int64?) -> Rollback {
        precondition(parameters.count == global.count, "rollback to \(parameters.count) parameters, the model has \(global.count)")
        var discarded: [FoldedUpdate] = []
        for i in lanes.indices {
            discarded += lanes[i].folded
            discarded += lanes[i].queued.map {
                FoldedUpdate(taskID: $0.taskID, clientID: $0.clientID, baseVersion: $0.baseVersion, staleness: 0, weight: 0)
            }
            lanes[i].folded.removeAll()
            lanes[i].queued.removeAll()
            lanes[i].kept.removeAll()
            lanes[i].deferred.removeAll()
            lanes[i].accumulator.reset()
            lanes[i].bufferOpenedAt = nil
            lanes[i].optimizerState = optimizer.makeState(parameterCount: parameters.count)
            lanes[i].parameters = parameters
            lanes[i].version += 1
            lanes[i].oldestBase = lanes[i].version
        }
        if let first = discardingFrom { globalVersion = min(globalVersion, first - 1) }
        self.stepScale = stepScale
        global = parameters
        let weights = lanes.count == 1 ? [1] : crossTierWeights()
        var outcomes: [AggregationOutcome] = []
        for i in lanes.indices {
            globalVersion += 1
            outcomes.append(AggregationOutcome(lane: i, laneVersion: lanes[i].version, laneParameters: parameters,
                                               globalVersion: globalVersion, globalParameters: parameters,
                                               combinedLaneVersions: lanes.map(\.version), laneWeights: weights,
                                               lanePushes: lanes[i].pushes, updates: [], trigger: "rollback"))
        }
        return Rollback(outcomes: outcomes, discarded: discarded)
    }

    /// Steps every lane with a non-empty buffer, and once more for updates that were queued behind it
    /// (draining, end of the federation): nothing acknowledged as received is left out.
    mutating func flushAll(settings: RuleSettings, now: Double) -> [AggregationOutcome] {
        var outcomes: [AggregationOutcome] = []
        for lane in lanes.indices {
            while !lanes[lane].folded.isEmpty {
                outcomes.append(stepBuffer(lane, settings: settings, trigger: "drain", now: now))
            }
        }
        return outcomes
    }

    /// Lanes whose buffer holds `size(lane)` updates, or whose buffer is older than `timeout`.
    func dueBuffers(size: (Int) -> Int, timeout: Double?, now: Double) -> [(lane: Int, trigger: String)] {
        var due: [(Int, String)] = []
        for (i, lane) in lanes.enumerated() where !lane.folded.isEmpty {
            if lane.folded.count >= max(1, size(i)) {
                due.append((i, "buffer"))
            } else if let timeout, let opened = lane.bufferOpenedAt, now - opened >= timeout {
                due.append((i, "timeout"))
            }
        }
        return due
    }
}

/// What a divergence rollback produced.
public struct Rollback: Sendable {
    /// The versions to persist, in order: one per lane, every model equal to the restored parameters.
    public var outcomes: [AggregationOutcome]
    /// Updates that were folded into open buffers or rounds (or queued behind them) and will never be
    /// aggregated: the coordinator refuses them, so their agents do not keep them.
    public var discarded: [FoldedUpdate]
    /// Updates whose outcome the caller dropped are its own to refuse; these are the rule's.
    public init(outcomes: [AggregationOutcome], discarded: [FoldedUpdate]) {
        self.outcomes = outcomes
        self.discarded = discarded
    }
}

/// A delta held until its buffer steps (see `Lane.deferred`).
struct DeferredDelta: Sendable {
    var delta: any Float32Segments
    var norm: Double
    var weight: Double
}

enum MixResult {
    case mixed(AggregationOutcome)
    case refused(UpdateDisposition)
}

/// One synchronous round: the clients selected, the updates still awaited, and when it closes.
struct SyncRound: Sendable {
    var lane: Int
    var baseVersion: Int64
    var selected: Set<String>
    /// Selected clients whose update has not arrived and who are still connected.
    var awaiting: Set<String>
    /// The round closes at this many updates (C; with over-selection fewer than selected).
    var needed: Int
    var deadline: Double?
    var received = 0

    init(lane: Int, baseVersion: Int64, selected: [String], needed: Int, deadline: Double?) {
        self.lane = lane
        self.baseVersion = baseVersion
        self.selected = Set(selected)
        awaiting = Set(selected)
        self.needed = min(max(1, needed), selected.count)
        self.deadline = deadline
    }

    /// Why the round is over now, or nil while it is still open.
    func closing(now: Double) -> String? {
        if received >= needed { return "round" }
        if awaiting.isEmpty { return received > 0 ? "round" : "empty" }
        if let deadline, now >= deadline { return received > 0 ? "deadline" : "empty" }
        return nil
    }
}

/// Chooses `count` of `candidates` uniformly without replacement (deterministic for a seed).
func sample(_ candidates: [String], count: Int, using generator: inout SeededGenerator) -> [String] {
    var pool = candidates.sorted()
    generator.shuffle(&pool)
    return Array(pool.prefix(max(0, count)))
}

/// How many clients a synchronous round selects and how many updates close it.
func roundSize(available: Int, settings: RuleSettings) -> (select: Int, needed: Int) {
    let c = settings.clientsPerRound == 0 ? available : min(settings.clientsPerRound, available)
    let over = Int((Double(c) * (1 + settings.overSelection)).rounded(.up))
    return (min(available, max(c, over)), c)
}

/// What every rule's model bookkeeping shares: its models live in a `LaneSet`; a flat rule keeps one
/// lane, a tiered rule one per tier.
protocol LaneSetRule: AggregationRule {
    var lanes: LaneSet { get }
    static var isTiered: Bool { get }
}

extension LaneSetRule {
    public var stepScale: Double { lanes.stepScale }
    public var globalVersion: Int64 { lanes.globalVersion }
    public var globalParameters: [Float] { lanes.global }
    public var laneCount: Int { Self.isTiered ? lanes.count : 1 }
    public var clipBound: Double? { lanes.clipBound }
    public func lane(_ lane: Int) -> LaneState { lanes[Self.isTiered ? lane : 0].state }
}
