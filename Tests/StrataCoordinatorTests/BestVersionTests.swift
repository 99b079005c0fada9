import Foundation
import Logging
import StrataCore
import StrataStore
import StrataWire
import Testing
@testable import StrataCoordinator

/// The coordinator reads the loss's spread (update option 5), refuses one its answer cannot have, and keeps as
/// the best version the latest one within the round's standard error of the best loss.
@Suite struct BestVersionTests {
    /// Σ ℓ² for `rows` rows of mean `loss` whose mean has standard error `error` (row variance error²·rows).
    static func squares(loss: Double, error: Double, rows: Int) -> Double {
        Double(rows - 1) * error * error * Double(rows) + Double(rows) * loss * loss
    }

    /// Trains one agent version by version and answers the evaluation of version v with `losses[v]` (20 rows,
    /// standard error 0.05 when `spread`); returns the best version once versions 1...3 were evaluated.
    static func bestAfterEvaluating(_ losses: [Int64: Double], spread: Bool,
                                    then check: (CoordinatorFixture) async throws -> Void = { _ in }) async throws -> Int64? {
        let fixture = try await CoordinatorFixture {
            $0.aggregation.rule.bufferSize = 1
            $0.evaluateEvery = 1
            $0.stop.targetMetric = .loss
        }
        let agent = await fixture.join("agent-01", train: 100, eval: 20)
        var evaluated = Set<Int64>()
        while evaluated.count < losses.count {
            guard let message = await agent.next() else { throw HarnessFailure("the mailbox closed after evaluating \(evaluated.sorted())") }
            guard case .task(let task) = message else { continue }
            if task.kind == .train {
                await fixture.coordinator.handleUpdate(CoordinatorFixture.update(for: task), from: agent.handle!)
                continue
            }
            let version = Int64(task.baseVersion)
            guard let loss = losses[version] else { continue }
            var answer = CoordinatorFixture.update(for: task)
            answer.evalLoss = Float(loss)
            answer.evalLossSquares = spread ? squares(loss: Double(answer.evalLoss), error: 0.05, rows: 20) : nil
            await fixture.coordinator.handleUpdate(answer, from: agent.handle!)
            evaluated.insert(version)
        }
        try await check(fixture)
        return await fixture.coordinator.bestRecord?.version
    }

    @Test func aLaterVersionWithinTheErrorOfTheBestLossBecomesTheBest() async throws {
        // v2 is worse than v1 by less than 0.05, v3 by more.
        let losses: [Int64: Double] = [1: 0.50, 2: 0.53, 3: 0.58]
        #expect(try await Self.bestAfterEvaluating(losses, spread: true) == 2)
        // Answers without option 5: the strict minimum, as an older agent gets it.
        #expect(try await Self.bestAfterEvaluating(losses, spread: false) == 1)
    }

    /// A restarted coordinator holds the best version against the best loss of the stored rounds (v1's 0.50),
    /// not against the best version's own (v2's 0.53).
    @Test func aRestartKeepsTheBestLossSeen() async throws {
        let best = try await Self.bestAfterEvaluating([1: 0.50, 2: 0.53], spread: true) { fixture in
            await fixture.coordinator.flushEvaluationWrites()
            let configuration = await fixture.coordinator.configuration
            let restarted = Coordinator(configuration: configuration, store: try CoordinatorStore(path: configuration.statePath),
                                        logger: Logger(label: "test"))
            try await restarted.restore()
            #expect(await restarted.bestRecord?.version == 2)
            #expect(await restarted.progress.record == 0.5)
            // stratactl status shows it beside the best version's own loss.
            #expect(try await restarted.status().bestScoreSeen == 0.5)
        }
        #expect(best == 2)
    }

    @Test(arguments: [(Double.nan, ErrorCode.nonFiniteValue), (1.0, ErrorCode.invalidUpdate), (1e9, ErrorCode.invalidUpdate)])
    func aSpreadTheAnswerCannotHaveIsRefused(squares: Double, code: ErrorCode) async throws {
        let fixture = try await CoordinatorFixture { $0.aggregation.rule.bufferSize = 1; $0.evaluateEvery = 1 }
        let agent = await fixture.join("agent-01", train: 100, eval: 20)
        var evaluation: TrainingTask?
        while evaluation == nil {
            let task = try await agent.nextTask()
            if task.kind == .evaluate { evaluation = task } else {
                await fixture.coordinator.handleUpdate(CoordinatorFixture.update(for: task), from: agent.handle!)
            }
        }
        // Loss 1 over 20 rows: Σℓ² must lie in [20, 400].
        var answer = CoordinatorFixture.update(for: evaluation!)
        answer.evalLossSquares = squares
        await fixture.coordinator.handleUpdate(answer, from: agent.handle!)
        var ack = try await agent.nextAck()
        while ack.taskID != evaluation!.taskID { ack = try await agent.nextAck() }
        #expect(ack.status == .refused && ack.code == code, "Σℓ² \(squares): \(ack)")
        #expect(await fixture.coordinator.lastEvaluation == nil)
    }
}
