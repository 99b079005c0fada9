import NIOCore
import StrataCore
import Testing
@testable import StrataWire

/// Train tasks as a difference from the previous train task's parameters (task option 0x8002): the agent's
/// reconstruction is the coordinator's record bit for bit, and a model followed over many tasks never drifts
/// further from the coordinator's than one encoding's error.
@Suite struct ReferencedParametersTests {
    static let spec = ModelSpec(kind: .softmaxRegression, featureCount: 12, outputCount: 4)

    static func task(_ id: UInt64, _ referenced: ReferencedParameters?, kind: TaskKind = .train, parameters: [WireTensor] = []) -> TrainingTask {
        TrainingTask(taskID: id, baseVersion: 7, kind: kind,
                     hyperparameters: Hyperparameters(learningRate: 0.1, batchSize: 10, epochs: 1, seed: 3, proximalMu: 0),
                     parameters: parameters, referencedParameters: referenced)
    }

    @Test(arguments: [DeltaEncoding.q8, .topK(fraction: 0.2)])
    func anAgentFollowingTheModelHoldsWhatTheCoordinatorRecorded(_ encoding: DeltaEncoding) throws {
        var random = SeededGenerator(seed: 9)
        var model = (0..<Self.spec.parameterCount).map { _ in Float(random.nextUniform() - 0.5) }
        var coordinatorRecord = model  // the first task of a session goes in float32
        var agentHolds = model
        var heldTask: UInt64 = 1
        for id in UInt64(2)...60 {
            // The model moves a little between tasks, as a tier's does.
            for i in model.indices { model[i] += Float(random.nextUniform() - 0.5) * 0.02 }
            let (referenced, holds) = try #require(ReferencedParameters.encode(target: model, held: coordinatorRecord, heldTaskID: heldTask,
                                                                              shapes: Self.spec.tensorShapes, as: encoding))
            coordinatorRecord = holds
            // The agent receives the task frame and rebuilds the parameters from what it holds.
            var frame = WireCodec.encode(.task(Self.task(id, referenced)))
            guard case .task(let received) = try WireCodec.decodeFrame(from: &frame, maxPayloadBytes: 1 << 20),
                  let option = received.referencedParameters else { Issue.record("no referenced parameters"); return }
            #expect(option.referenceTaskID == heldTask)
            try ModelTensors.validateShapes(option.difference, spec: Self.spec)
            agentHolds = option.reconstruct(from: agentHolds)
            heldTask = id
            #expect(agentHolds == coordinatorRecord, "task \(id): the agent's model is not the coordinator's record")
        }
        // Whatever one difference left out is in the next one: the agent stays within one encoding's error of the
        // model (q8: half a step of the last difference's range; top-k with 20 %: the unsent part of ~1 task's move
        // plus what is still queued), not 58 tasks' worth.
        let gap = zip(model, agentHolds).map { abs($0 - $1) }.max()!
        #expect(gap < (encoding == .q8 ? 0.001 : 0.05), "largest gap \(gap)")
    }

    @Test func theDifferenceIsSmallerThanTheModel() throws {
        // The default federation's model (60 features, 10 classes): 610 values, q8 a little over a quarter.
        let spec = ModelSpec(kind: .softmaxRegression, featureCount: 60, outputCount: 10)
        var random = SeededGenerator(seed: 2)
        let held = (0..<spec.parameterCount).map { _ in Float(random.nextUniform()) }
        let target = held.map { $0 + 0.001 }
        let (referenced, _) = try #require(ReferencedParameters.encode(target: target, held: held, heldTaskID: 1,
                                                                      shapes: spec.tensorShapes, as: .q8))
        let float32 = WireCodec.encode(.task(Self.task(2, nil, parameters: ModelTensors.encode(target, spec: spec)))).readableBytes
        let compressed = WireCodec.encode(.task(Self.task(2, referenced))).readableBytes
        #expect(compressed * 3 < float32, "\(compressed) bytes against \(float32)")
    }

    @Test func onlyATrainTaskWithoutTensorsCarriesIt() throws {
        let (referenced, _) = try #require(ReferencedParameters.encode(target: [1, 2, 3, 4, 5], held: [0, 0, 0, 0, 0], heldTaskID: 1,
                                                                      shapes: [("weight", [1, 5])], as: .q8))
        // Built by hand: the initialiser refuses both combinations.
        for (kind, tensors) in [(TaskKind.evaluate, [WireTensor]()), (.train, [WireTensor(name: "bias", shape: [1], values: [1])])] {
            var good = Self.task(5, referenced)
            good.kind = kind
            good.parameters = tensors
            var frame = WireCodec.encode(.task(good))
            #expect(throws: WireError.self) { try WireCodec.decodeFrame(from: &frame, maxPayloadBytes: 1 << 20) }
        }
    }
}
