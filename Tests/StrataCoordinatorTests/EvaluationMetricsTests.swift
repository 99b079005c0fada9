import Foundation
import Logging
import StrataCore
import StrataStore
import StrataTransport
import StrataWire
import Testing
@testable import StrataCoordinator

/// Evaluation statistics (update option 2) on a coordinator driven by hand: pooled metrics, their quorum,
/// refused statistics, and a target on a pooled metric.
@Suite struct PooledEvaluationTests {
    typealias Inbox = EvaluationCountingTests.Inbox

    /// 20 evaluation rows of 3 classes, 14 right: accuracy 0.7, macro-F1 mean(12/16, 8/12, 8/12) = 0.69444….
    static let counts = ClassCounts(support: [8, 6, 6], predicted: [8, 6, 6], correct: [6, 4, 4])
    static let macroF1 = (12.0 / 16 + 8.0 / 12 + 8.0 / 12) / 3

    static func answer(_ task: TrainingTask, statistics: ClassCounts?) -> Update {
        var update = CoordinatorFixture.update(for: task, evalAccuracy: 0.7)
        update.evaluation = statistics.map { WireEvaluationStatistics(.classification($0)) }
        return update
    }

    @Test func aTargetOnMacroF1CountsOnlyAnswersWithStatisticsAndRefusesInconsistentOnes() async throws {
        let fixture = try await CoordinatorFixture {
            $0.aggregation.rule.bufferSize = 1
            $0.evaluateEvery = 1
            $0.stop.targetMetric = .macroF1
            $0.stop.target = 0.69
            $0.stop.evaluationQuorum = 0.5
            $0.stop.evaluationCombination = EvaluationCombination(trim: 0, weightRatio: nil)
        }
        var agents: [CoordinatorFixture.Agent] = []
        for i in 1...3 { agents.append(await fixture.join(String(format: "agent-%02d", i))) }
        let inboxes = agents.map(Inbox.init)
        let coordinator = fixture.coordinator

        // Version 1: two answers, one of them (an older agent) without statistics; the third claims 21 rows.
        await coordinator.handleUpdate(CoordinatorFixture.update(for: try await inboxes[0].training()), from: agents[0].handle!)
        await coordinator.waitUntilCommitted()
        await coordinator.handleUpdate(Self.answer(try await inboxes[0].evaluation(of: 1), statistics: Self.counts), from: agents[0].handle!)
        await coordinator.handleUpdate(Self.answer(try await inboxes[1].evaluation(of: 1), statistics: nil), from: agents[1].handle!)
        var lying = Self.counts
        lying.support[0] += 1
        lying.predicted[0] += 1
        await coordinator.handleUpdate(Self.answer(try await inboxes[2].evaluation(of: 1), statistics: lying), from: agents[2].handle!)
        var ack = try await agents[2].nextAck()
        while ack.status != .refused { ack = try await agents[2].nextAck() }
        #expect(ack.code == .invalidUpdate && ack.reason.contains("21"), "\(ack.reason)")
        await coordinator.closeEvaluation(version: 1)
        let first = try #require(await coordinator.lastEvaluation)
        // macro-F1 from one agent's statistics: reported, but 1 answer is below the quorum of 2 of 3.
        #expect(first.clients == 2 && first.statisticsClients == 1)
        #expect(abs((first.metrics["macro-f1"] ?? 0) - Self.macroF1) < 1e-12)
        #expect(first.score == first.metrics["macro-f1"] && !first.counted && first.requiredClients == 2)
        #expect(await coordinator.stopReason == nil)

        // Version 2: two answers with statistics: counted, the target (0.69) reached, the best version with its metrics.
        await coordinator.handleUpdate(CoordinatorFixture.update(for: try await inboxes[0].training()), from: agents[0].handle!)
        await coordinator.waitUntilCommitted()
        for i in 0..<2 {
            await coordinator.handleUpdate(Self.answer(try await inboxes[i].evaluation(of: 2), statistics: Self.counts), from: agents[i].handle!)
        }
        await coordinator.closeEvaluation(version: 2)
        let second = try #require(await coordinator.lastEvaluation)
        #expect(second.counted && second.newBest && second.metric == "macro-f1")
        #expect(await coordinator.stopReason == .targetReached)
        let best = try #require(await coordinator.bestRecord)
        #expect(best.version == 2 && best.metric == "macro-f1" && abs(best.score - Self.macroF1) < 1e-12 && best.answered == 2)
        #expect(best.metrics?["macro-f1"] == best.score)
        let status = try await coordinator.status()
        #expect(status.latestMetrics?["macro-f1"] == best.score && status.model == "softmax")
        let curve = try await coordinator.evaluationsReport(limit: 10)
        #expect(curve.entries.first?.metrics?["macro-f1"] == best.score && curve.entries.first?.statisticsAnswered == 2)
        #expect(curve.entries.last?.statisticsAnswered == 1 && curve.entries.last?.counted == false)

        // A restarted coordinator has the best version with its pooled metrics (stored as JSON).
        await coordinator.flushEvaluationWrites()
        var configuration = CoordinatorConfiguration(
            tls: TLSConfiguration(certificateChainFile: "unused.crt", privateKeyFile: "unused.key", trustRootsFile: "unused-ca.crt"),
            statePath: fixture.directory + "/coordinator.sqlite", model: CoordinatorFixture.spec)
        configuration.preprocessing.standardize = false
        configuration.stop.targetMetric = .macroF1
        let restarted = Coordinator(configuration: configuration, store: try CoordinatorStore(path: configuration.statePath), logger: Logger(label: "test"))
        try await restarted.restore()
        #expect(await restarted.bestRecord == best)
    }

    @Test func aTargetMetricThatDoesNotFitTheModelStopsTheCoordinatorBeforeItStarts() async throws {
        for metric in [TargetMetric.rmse, .auc] {   // a regression metric, and AUC with 3 classes
            await #expect(throws: StrataCoreError.self) {
                _ = try await CoordinatorFixture { $0.stop.targetMetric = metric }
            }
        }
    }
}
