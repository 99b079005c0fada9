import StrataCore
import StrataStore
import StrataWire

/// What the statistics phase has asked and heard so far.
struct StatisticsPhase {
    var asked: Set<String> = []
    var answers: [String: DataSummary] = [:]
    var featureNames: [String: [String]] = [:]
    var startedAt: ContinuousClock.Instant?
}

/// The statistics phase (docs/PROTOCOL.md §4): before training, every agent summarises its rows; the
/// coordinator fixes the federation's preprocessing from the summaries (FederatedStandardization decides),
/// stores it durably and sends it with the model from then on.
extension Coordinator {
    func restorePreprocessing(globalVersion: Int64) async throws {
        let settings = configuration.preprocessing
        if let stored = try await store.preprocessing() {
            guard stored.features.count == configuration.model.featureCount else {
                throw StoreError.cannotOpen(path: store.path, detail: "the stored preprocessing has \(stored.features.count) features, the model \(configuration.model.featureCount)")
            }
            if let fixed = settings.fixed, fixed != stored {
                logger.warning("--preprocessing-file differs from the preprocessing this federation was fixed with; keeping the stored one")
            }
            preprocessing = stored
            logger.info("preprocessing restored", metadata: ["columns": "\(stored.featureNames.joined(separator: ","))", "labels": "\(stored.labels.count)"])
            return
        }
        if let fixed = settings.fixed {
            guard fixed.features.count == configuration.model.featureCount else {
                throw StoreError.cannotOpen(path: store.path, detail: "--preprocessing-file has \(fixed.features.count) features, the model \(configuration.model.featureCount)")
            }
            preprocessing = try await store.savePreprocessing(fixed)
            logger.info("preprocessing given by file", metadata: ["features": "\(fixed.features.count)", "labels": "\(fixed.labels.count)"])
            return
        }
        guard settings.standardize else { return }
        guard globalVersion == 0 else {
            logger.warning("this federation was trained without standardisation (its state predates it); continuing without")
            return
        }
        gatheringStatistics = true
        logger.info("training starts after the statistics phase", metadata: [
            "agents": "\(settings.statisticsAgents)", "timeout": "\(settings.statisticsTimeout)"])
    }

    /// An agent that cannot apply the federation's preprocessing must not train on it.
    func preprocessingRefusal(_ hello: Hello) -> ErrorMessage? {
        guard gatheringStatistics || preprocessing != nil else { return nil }
        guard hello.capabilities.contains(.preprocessing) else {
            return ErrorMessage(code: .incompatibleData, message:
                "this federation standardises its inputs and the agent cannot apply a preprocessing (protocol 2 capability bit 1): upgrade the agent")
        }
        if let fixed = preprocessing?.featureNames, !fixed.isEmpty, !hello.featureNames.isEmpty, fixed != hello.featureNames {
            logger.warning("agent's feature columns differ from the model's", metadata: [
                "agent": "\(hello.featureNames.joined(separator: ","))", "model": "\(fixed.joined(separator: ","))"])
        }
        return nil
    }

    /// The task, carrying the preprocessing if this session has not had it yet.
    func withPreprocessing(_ task: TrainingTask, for session: AgentSessionHandle) -> TrainingTask {
        guard let preprocessing, preprocessingSent.insert(session.sessionID).inserted else { return task }
        var task = task
        task.preprocessing = WirePreprocessing(preprocessing)
        return task
    }

    /// Asks every connected agent not yet asked; fixes the preprocessing when enough answered.
    func gatherStatistics() async {
        let targets = sessions.values.filter { !statistics.asked.contains($0.clientID) && $0.capabilities.contains(.statistics) }
            .sorted { $0.clientID < $1.clientID }
        if !targets.isEmpty {
            if statistics.startedAt == nil { statistics.startedAt = .now }
            for session in targets { statistics.asked.insert(session.clientID) }
            if let records = await allocateTasks(targets.map { TaskRequest(clientID: $0.clientID, kind: .statistics, lane: -1, baseVersion: 0) }) {
                for (session, record) in zip(targets, records) where sessions[session.clientID] === session {
                    session.send(.task(TrainingTask(taskID: UInt64(record.id), baseVersion: 0, kind: .statistics,
                                                    hyperparameters: Hyperparameters(learningRate: 0, batchSize: 0, epochs: 0, seed: 0, proximalMu: 0),
                                                    parameters: [])))
                }
                logger.info("statistics requested", metadata: ["agents": "\(targets.map(\.clientID).joined(separator: ","))"])
            }
        }
        await fixPreprocessingIfReady()
    }

    func handleStatistics(_ update: Update, task: TaskRecord, from session: AgentSessionHandle) async {
        switch checkedSummary(update, session: session) {
        case .failure(let refusal):
            await refuse(update, from: session, code: refusal.code, reason: refusal.message)
        case .success(let summary):
            session.send(.ack(Ack(taskID: update.taskID, status: .committed, modelVersion: 0)))
            guard gatheringStatistics else { return }  // late: the preprocessing is fixed already
            statistics.answers[session.clientID] = summary
            statistics.featureNames[session.clientID] = session.featureNames
            await fixPreprocessingIfReady()
            if !gatheringStatistics { await aggregateAndDispatch() }
        }
    }

    /// Every count within what the hello announced, every summary consistent with itself.
    func checkedSummary(_ update: Update, session: AgentSessionHandle) -> Result<DataSummary, ErrorMessage> {
        guard let wire = update.statistics else {
            return .failure(ErrorMessage(code: .invalidUpdate, message: "an answer to a statistics task must carry update option 1 (statistics)"))
        }
        guard let summary = DataSummary(wire) else {
            return .failure(ErrorMessage(code: .outOfRange, message: "a count in the statistics does not fit a signed 64-bit integer, or a label repeats"))
        }
        guard summary.features.count == configuration.model.featureCount else {
            return .failure(ErrorMessage(code: .invalidUpdate, message: "statistics of \(summary.features.count) features; the model has \(configuration.model.featureCount)"))
        }
        let rows = session.announced.train
        for (j, column) in summary.features.enumerated() {
            let (total, overflow) = column.count.addingReportingOverflow(column.missingCount)
            guard !overflow, Int64(total) <= rows else {
                return .failure(ErrorMessage(code: .outOfRange, message: "feature \(j): \(column.count) values + \(column.missingCount) missing exceeds the \(rows) training rows the hello announced"))
            }
            do { try column.validate() } catch {
                return .failure(ErrorMessage(code: .invalidUpdate, message: "feature \(j): \(error)"))
            }
        }
        switch summary.labels {
        case .numeric(let column):
            guard Int64(column.count) <= rows, column.isConsistent else {
                return .failure(ErrorMessage(code: .invalidUpdate, message: "label summary inconsistent or above the announced rows"))
            }
        case .text(let counts):
            let limit = rows.addingReportingOverflow(session.announced.evaluation)
            let total = counts.counts.values.reduce(into: (0, false)) { acc, c in
                let (sum, o) = acc.0.addingReportingOverflow(c); acc = (sum, acc.1 || o || c < 0)
            }
            guard !total.1, limit.overflow || Int64(total.0) <= limit.partialValue else {
                return .failure(ErrorMessage(code: .outOfRange, message: "label counts exceed the rows the hello announced"))
            }
        }
        return .success(summary)
    }

    /// Fixes the preprocessing once `statisticsAgents` answered, or at the timeout with at least one answer.
    func fixPreprocessingIfReady() async {
        guard gatheringStatistics, !statistics.answers.isEmpty else { return }
        let settings = configuration.preprocessing
        let enough = statistics.answers.count >= max(1, settings.statisticsAgents)
        let timedOut = statistics.startedAt.map { ContinuousClock.now - $0 >= settings.statisticsTimeout } ?? false
        guard enough || timedOut else { return }
        let clients = statistics.answers.keys.sorted()
        let names = clients.lazy.compactMap { self.statistics.featureNames[$0] }.first { !$0.isEmpty } ?? []
        do {
            let fixed = try settings.standardization.preprocessing(
                from: clients.map { statistics.answers[$0]! }, featureNames: names,
                regression: !configuration.model.isClassifier, classes: configuration.model.outputCount)
            let stored = try await store.savePreprocessing(fixed)
            guard gatheringStatistics else { return }
            preprocessing = stored
            gatheringStatistics = false
            logger.info("preprocessing fixed", metadata: [
                "agents": "\(clients.count)", "timedOut": "\(!enough)",
                "columns": "\(Self.describe(stored))", "labels": "\(stored.labels.joined(separator: ","))"])
            let regression = !configuration.model.isClassifier
            for (index, feature) in FederatedStandardization.leftOut(of: clients.map { statistics.answers[$0]! }, regression: regression) {
                let column = feature.map { names.indices.contains($0) ? names[$0] : "feature \($0)" } ?? "the target"
                logger.warning("statistics left out", metadata: [
                    "client": "\(clients[index])", "column": "\(column)",
                    "why": "more than \(Int(FederatedStandardization.outlierSpread)) spreads from the median agent's",
                    "fix": "if this agent is honest, give the statistics with --preprocessing-file"])
            }
            if !stored.labels.isEmpty, stored.labels.count < configuration.model.outputCount {
                // Unused outputs train to never win; they cost parameters, and AUC needs exactly two classes.
                logger.warning("fewer labels than classes", metadata: [
                    "labels": "\(stored.labels.count)", "classes": "\(configuration.model.outputCount)",
                    "fix": "restart with --classes \(stored.labels.count) on a new --state"])
            }
        } catch let failure as FederatedStandardization.Failure {
            logger.error("cannot fix the preprocessing", metadata: ["reason": "\(failure)"])
            requestStop(.failure, detail: "statistics phase: \(failure)")
        } catch {
            logger.error("cannot store the preprocessing", metadata: ["error": "\(error)"])
            requestStop(.failure, detail: "cannot write the state database: \(error)")
        }
    }

    static func describe(_ p: Preprocessing) -> String {
        p.features.enumerated().prefix(32).map { j, t in
            let name = j < p.featureNames.count ? p.featureNames[j] : "x\(j)"
            return "\(name)(mean \(Self.short(t.center)), sd \(Self.short(t.scale)))"
        }.joined(separator: " ") + (p.features.count > 32 ? " …" : "")
    }

    static func short(_ v: Double) -> String {
        abs(v) >= 1e5 || (abs(v) < 1e-3 && v != 0) ? String(format: "%.3e", v) : String(format: "%.4g", v)
    }
}
