import StrataCore
import StrataWire
import Testing
@testable import StrataCoordinator

/// What the coordinator keeps of a large model between the moments it needs it (docs/PERFORMANCE.md, "Models
/// larger than a frame").
@Suite struct TaskBytesTests {
    /// A round's task bytes are dropped once the round is out when the model is larger than a frame (they would
    /// be one more model alive through the next step); kept for a small model, and in asynchronous modes, whose
    /// tasks of one version go out one by one.
    @Test(arguments: [
        (AggregationMode.fedavg, 32, false),
        (AggregationMode.fedavg, 64 << 20, true),
        (AggregationMode.strata, 32, true),
    ])
    func taskBytesOutliveTheirDispatchOnlyWhereALaterTaskUsesThem(mode: AggregationMode, maxFrameBytes: Int, kept: Bool) async throws {
        let fixture = try await CoordinatorFixture {
            $0.aggregation.mode = mode
            $0.maxFrameBytes = maxFrameBytes   // 32 bytes: the 4 × 3 softmax (60 bytes) is larger than a frame
        }
        let agent = await fixture.join("agent-01", capabilities: .messageParts)
        try #require(agent.refusal == nil, "\(agent.refusal!)")
        let task = try await agent.nextTask()
        #expect(task.kind == .train)
        #expect(await fixture.coordinator.tensorCache.isEmpty == !kept, "\(mode), frames of \(maxFrameBytes) bytes")
        // The next task is encoded again where the bytes were dropped, and is the next version's in fedavg.
        await fixture.coordinator.handleUpdate(CoordinatorFixture.update(for: task), from: agent.handle!)
        let next = try await agent.nextTask()
        #expect(next.kind == .train && next.parameters.count == task.parameters.count)
        if mode == .fedavg { #expect(next.baseVersion == task.baseVersion + 1) }
    }

    /// The reader hands an update over without keeping a copy: the message it read is left without the update.
    @Test func takingTheUpdateLeavesTheMessageWithoutIt() {
        let task = TrainingTask(taskID: 7, baseVersion: 0, kind: .train,
                                hyperparameters: Hyperparameters(learningRate: 0.1, batchSize: 1, epochs: 1, seed: 0, proximalMu: 0),
                                parameters: [])
        var message = Message.update(CoordinatorFixture.update(for: task))
        let update = message.takeUpdate()
        #expect(update?.taskID == 7)
        guard case .heartbeat = message else {
            Issue.record("the message still holds the update: \(message.type)")
            return
        }
        var other = Message.heartbeat(Heartbeat(sequence: 3, timestampNanos: 4, isReply: false))
        #expect(other.takeUpdate() == nil)
        #expect(other == .heartbeat(Heartbeat(sequence: 3, timestampNanos: 4, isReply: false)))
        #expect(UpdateDelivery(update!).take() == update)
    }
}
