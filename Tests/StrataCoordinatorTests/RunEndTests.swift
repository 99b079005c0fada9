import Foundation
import Logging
import StrataCore
import StrataStore
import StrataTransport
import StrataWire
import Testing
@testable import StrataCoordinator

/// --min-clients, the evaluation quorum and the run's end, on a coordinator driven by hand.
@Suite struct QuorumTests {
    static func fedavg(_ c: inout CoordinatorConfiguration, minClients: Int) {
        c.aggregation.mode = .fedavg
        c.aggregation.rule = RuleSettings.defaults(for: .fedavg)
        c.minClients = minClients
    }

    /// The issue: fedavg started round 1 with whoever was there; with one agent a version per update.
    @Test func noTrainingTaskBeforeMinClientsAgentsAreConnectedAndNoStallAfterwards() async throws {
        let fixture = try await CoordinatorFixture { Self.fedavg(&$0, minClients: 3) }
        let a = await fixture.join("agent-01")
        let b = await fixture.join("agent-02")
        for _ in 0..<5 { await fixture.coordinator.tick() }
        #expect(await fixture.coordinator.tasks.isEmpty, "a task was handed out with 2 of 3 agents connected")
        #expect(await fixture.coordinator.trainingStarted == false)
        #expect(try await fixture.coordinator.status().waitingForClients == true)

        let c = await fixture.join("agent-03")
        var round: [String: TrainingTask] = [:]
        for agent in [a, b, c] {
            let task = try await agent.nextTask()
            #expect(task.kind == .train && task.baseVersion == 0)
            round[agent.id] = task
        }
        #expect(try await fixture.coordinator.status().waitingForClients == false)

        // Training started: an agent leaving does not stall the federation below --min-clients.
        await fixture.coordinator.sessionEnded(c.handle!, reason: "test")
        for agent in [a, b] {
            await fixture.coordinator.handleUpdate(CoordinatorFixture.update(for: round[agent.id]!), from: agent.handle!)
        }
        await fixture.coordinator.waitUntilCommitted()
        #expect(await fixture.coordinator.currentVersion == 1)
        for agent in [a, b] {
            var next = try await agent.nextTask()
            while next.kind != .train { next = try await agent.nextTask() }
            #expect(next.baseVersion == 1, "\(agent.id) got no task of round 2 with 2 of 3 agents connected")
        }
    }

    /// Training started once is durable: a restarted coordinator does not wait for the quorum again.
    @Test func aRestartedRunResumesWithoutWaitingForTheQuorumAgain() async throws {
        let fixture = try await CoordinatorFixture { Self.fedavg(&$0, minClients: 2) }
        _ = await fixture.join("agent-01")
        let b = await fixture.join("agent-02")
        _ = try await b.nextTask()

        var configuration = CoordinatorConfiguration(
            tls: TLSConfiguration(certificateChainFile: "unused.crt", privateKeyFile: "unused.key", trustRootsFile: "unused-ca.crt"),
            statePath: fixture.directory + "/coordinator.sqlite", model: CoordinatorFixture.spec)
        configuration.evaluateEvery = 0
        configuration.preprocessing.standardize = false  // as the fixture: hand-made hellos
        Self.fedavg(&configuration, minClients: 2)
        let restarted = Coordinator(configuration: configuration, store: try CoordinatorStore(path: configuration.statePath), logger: Logger(label: "test"))
        try await restarted.restore()
        #expect(await restarted.trainingStarted)
        let (stream, continuation) = AsyncStream<Message>.makeStream()
        let hello = Hello(agentVersion: "test", featureCount: 4, trainSampleCount: 100, evalSampleCount: 20, pendingUpdateCount: 0)
        guard case .welcome(_, let handle) = await restarted.admit(clientID: "agent-01", hello: hello, mailbox: continuation) else {
            Issue.record("refused"); return
        }
        await restarted.sessionStarted(handle)
        var messages = stream.makeAsyncIterator()
        _ = await messages.next()   // welcome
        guard case .task(let task)? = await messages.next() else { Issue.record("no task for the only agent after a restart"); return }
        #expect(task.kind == .train)
    }
}

@Suite struct EvaluationCountingTests {
    /// An agent's tasks in any order: tasks read while looking for another are kept for later.
    final class Inbox: @unchecked Sendable {
        let agent: CoordinatorFixture.Agent
        var kept: [TrainingTask] = []
        init(_ agent: CoordinatorFixture.Agent) { self.agent = agent }

        func take(_ match: (TrainingTask) -> Bool) async throws -> TrainingTask {
            if let i = kept.firstIndex(where: match) { return kept.remove(at: i) }
            while true {
                let task = try await agent.nextTask()
                if match(task) { return task }
                kept.append(task)
            }
        }
        func training() async throws -> TrainingTask { try await take { $0.kind == .train } }
        func evaluation(of version: Int64) async throws -> TrainingTask { try await take { $0.kind == .evaluate && $0.baseVersion == UInt64(version) } }
    }

    @Test func aPartialEvaluationIsReportedWithAnsweredOfAskedButNeverCountsForTheTargetOrTheBest() async throws {
        let fixture = try await CoordinatorFixture {
            $0.aggregation.rule.bufferSize = 1
            $0.evaluateEvery = 1
            $0.stop = StopCondition(targetAccuracy: 0.5)
            $0.stop.evaluationQuorum = 0.5
            $0.stop.evaluationCombination = EvaluationCombination(trim: 0, weightRatio: nil)
        }
        var agents: [CoordinatorFixture.Agent] = []
        for i in 1...4 { agents.append(await fixture.join(String(format: "agent-%02d", i))) }
        let lead = agents[0]
        let inboxes = agents.map(Inbox.init)
        let coordinator = fixture.coordinator

        // Version 1: one of the four agents asked answers, with accuracy 1.0.
        await coordinator.handleUpdate(CoordinatorFixture.update(for: try await inboxes[0].training()), from: lead.handle!)
        await coordinator.waitUntilCommitted()
        let first = try await inboxes[0].evaluation(of: 1)
        await coordinator.handleUpdate(CoordinatorFixture.update(for: first, evalAccuracy: 1), from: lead.handle!)
        await coordinator.closeEvaluation(version: 1)   // what the evaluation timeout does
        let partial = try #require(await coordinator.lastEvaluation)
        #expect(partial.version == 1 && partial.clients == 1 && partial.askedClients == 4 && partial.requiredClients == 2)
        #expect(!partial.counted && !partial.newBest)
        #expect(await coordinator.stopReason == nil, "a partial evaluation ended the run")
        #expect(await coordinator.bestRecord == nil)
        #expect(await coordinator.progress.best == nil)
        await #expect(throws: AdminError.self) { try await coordinator.modelParameters(.best) }

        // Version 2: two of four answer: it counts, reaches the target and is the best.
        await coordinator.handleUpdate(CoordinatorFixture.update(for: try await inboxes[0].training()), from: lead.handle!)
        await coordinator.waitUntilCommitted()
        for inbox in inboxes.prefix(2) {
            let task = try await inbox.evaluation(of: 2)
            await coordinator.handleUpdate(CoordinatorFixture.update(for: task, evalAccuracy: 0.6), from: inbox.agent.handle!)
        }
        await coordinator.closeEvaluation(version: 2)
        let whole = try #require(await coordinator.lastEvaluation)
        #expect(whole.counted && whole.newBest && whole.clients == 2 && whole.askedClients == 4)
        #expect(await coordinator.stopReason == .targetReached)
        #expect(await coordinator.bestRecord?.version == 2)
        let best = try await coordinator.modelParameters(.best)
        #expect(best.version == 2 && best.score == whole.accuracy && best.answered == 2 && best.asked == 4)

        // The curve says the same: answered of asked, counted or not.
        let curve = try await coordinator.evaluationsReport(limit: 10).entries
        #expect(curve.map(\.version) == [2, 1])
        #expect(curve.map(\.counted) == [true, false] && curve.map(\.answered) == [2, 1] && curve.allSatisfy { $0.asked == 4 })
        let summary = await coordinator.summary()
        #expect(summary.reason == .targetReached && summary.targetReached && summary.best?.version == 2)
    }
}

@Suite struct RunEndCoordinatorTests {
    @Test func patienceEndsARunThatStoppedImprovingAndTheSummarySaysWhy() async throws {
        let fixture = try await CoordinatorFixture { $0.stop.patience = .milliseconds(300) }
        #expect(abs((await fixture.coordinator.progress.conditions.patience ?? 0) - 0.3) < 1e-9)
        await fixture.coordinator.checkDeadline()
        _ = await fixture.join("agent-01")
        let deadline = ContinuousClock.now + .seconds(20)
        while await fixture.coordinator.stopReason == nil, ContinuousClock.now < deadline {
            await fixture.coordinator.checkDeadline()
            try await Task.sleep(for: .milliseconds(20))
        }
        let summary = await fixture.coordinator.summary()
        #expect(summary.reason == .patience)
        #expect(summary.detail?.contains("--patience") == true, "\(summary.detail ?? "")")
    }

    @Test func aRunWithNoEndConditionGetsTheDefaultEnd() async throws {
        let fixture = try await CoordinatorFixture { $0.stop.defaultPatience = .milliseconds(200) }
        #expect(await fixture.coordinator.progress.conditions.endsByDefaultOnly)
        _ = await fixture.join("agent-01")
        let deadline = ContinuousClock.now + .seconds(20)
        while await fixture.coordinator.stopReason == nil, ContinuousClock.now < deadline {
            await fixture.coordinator.checkDeadline()
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(await fixture.coordinator.stopReason == .defaultEnd)
    }
}
