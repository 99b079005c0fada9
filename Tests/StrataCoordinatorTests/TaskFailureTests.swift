import StrataCore
import StrataWire
import Testing
@testable import StrataCoordinator

/// An agent whose trainer failed reports the task (update option 0x8003): nothing of it is used, nothing
/// waits for it, and the agent gets another task.
@Suite struct TaskFailureTests {
    typealias Inbox = EvaluationCountingTests.Inbox

    @Test func aFailedTrainingTaskIsRefusedWithItsReasonAndAnotherTaskFollows() async throws {
        let fixture = try await CoordinatorFixture { $0.aggregation.rule.bufferSize = 1 }
        let agent = await fixture.join("agent-01")
        let coordinator = fixture.coordinator
        let task = try await agent.nextTask()
        await coordinator.handleUpdate(.failed(task.taskID, baseVersion: task.baseVersion, reason: "the trainer exited with status 3"), from: agent.handle!)
        let ack = try await agent.nextAck()
        #expect(ack.status == .refused && ack.code == .taskFailed, "\(ack)")
        #expect(ack.reason.contains("the trainer exited with status 3"), "\(ack.reason)")
        await coordinator.waitUntilCommitted()
        #expect(await coordinator.rule.globalVersion == 0, "a failed task stepped the model")
        // Another task at once, which the agent can answer as usual; the failed one cannot be answered later.
        let next = try await agent.nextTask()
        #expect(next.kind == .train && next.taskID != task.taskID)
        await coordinator.handleUpdate(CoordinatorFixture.update(for: task), from: agent.handle!)
        let late = try await agent.nextAck()
        #expect(late.status == .refused && late.taskID == task.taskID, "\(late)")
        await coordinator.handleUpdate(CoordinatorFixture.update(for: next), from: agent.handle!)
        #expect(try await agent.nextAck().status == .received)
        await coordinator.waitUntilCommitted()
        #expect(await coordinator.rule.globalVersion == 1)
    }

    @Test func aFailedEvaluationDoesNotHoldTheRound() async throws {
        let fixture = try await CoordinatorFixture {
            $0.aggregation.rule.bufferSize = 1
            $0.evaluateEvery = 1
            $0.stop.evaluationCombination = EvaluationCombination(trim: 0, weightRatio: nil)
        }
        let a = await fixture.join("agent-01"), b = await fixture.join("agent-02")
        let (inboxA, inboxB) = (Inbox(a), Inbox(b))
        let coordinator = fixture.coordinator
        await coordinator.handleUpdate(CoordinatorFixture.update(for: try await inboxA.training()), from: a.handle!)
        await coordinator.waitUntilCommitted()
        let evaluationA = try await inboxA.evaluation(of: 1), evaluationB = try await inboxB.evaluation(of: 1)
        await coordinator.handleUpdate(CoordinatorFixture.update(for: evaluationA, evalAccuracy: 0.75), from: a.handle!)
        #expect(await coordinator.lastEvaluation == nil, "the round closed before agent-02 answered")
        await coordinator.handleUpdate(.failed(evaluationB.taskID, baseVersion: evaluationB.baseVersion, reason: "trainer hung"), from: b.handle!)
        let round = try #require(await coordinator.lastEvaluation, "the round still waits for the failed agent")
        #expect(round.version == 1 && round.clients == 1 && round.accuracy == 0.75)
    }

    @Test func theReasonTravelsAsACriticalOptionAndIsBounded() throws {
        let failed = Update.failed(9, baseVersion: 2, reason: String(repeating: "é", count: 2000))
        #expect(failed.failure!.utf8.count <= WireLimits.maxFailureBytes && failed.delta.isEmpty)
        let frame = WireCodec.encode(.update(failed))
        var buffer = frame
        guard case .update(let decoded) = try WireCodec.decodeFrame(from: &buffer, maxPayloadBytes: 1 << 20) else { Issue.record("not an update"); return }
        #expect(decoded == failed)
        // 0x8003 after the fixed fields: a receiver that does not know it refuses the update rather than use it.
        let bytes = Array(frame.readableBytesView)
        #expect(bytes.windowed(by: [0x03, 0x80]))
    }
}

extension Array where Element == UInt8 {
    func windowed(by pattern: [UInt8]) -> Bool {
        guard count >= pattern.count else { return false }
        return (0...(count - pattern.count)).contains { Array(self[$0..<$0 + pattern.count]) == pattern }
    }
}

/// An agent that arrives after its federation ended is told so (goodbye, retry 0), like every agent that was
/// connected; during a drain it is told to come back (error 200).
@Suite struct LateArrivalTests {
    @Test func aLateAgentGetsTheFinalGoodbyeAndADrainSaysComeBack() async throws {
        let ended = try await CoordinatorFixture()
        await ended.coordinator.requestStop(.maxVersions)
        let (_, continuation) = AsyncStream<Message>.makeStream()
        let hello = Hello(agentVersion: "test", featureCount: 4, trainSampleCount: 10, evalSampleCount: 2, pendingUpdateCount: 0)
        guard case .over(let goodbye) = await ended.coordinator.admit(clientID: "agent-09", hello: hello, mailbox: continuation) else {
            Issue.record("a late agent was not told the federation is over"); return
        }
        #expect(goodbye.retryAfterMillis == 0 && goodbye.message.contains("max-versions"))

        let draining = try await CoordinatorFixture()
        await draining.coordinator.requestStop(.signal)
        guard case .refuse(let error) = await draining.coordinator.admit(clientID: "agent-09", hello: hello, mailbox: continuation) else {
            Issue.record("an agent arriving during a drain was admitted or sent away for good"); return
        }
        #expect(error.code == .shuttingDown)
    }
}
