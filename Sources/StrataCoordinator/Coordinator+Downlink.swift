import StrataCore
import StrataWire

/// Train tasks as compressed differences (`--task-encoding`, task option 0x8002): for each session whose agent
/// announced capability bit 4, the coordinator keeps the parameters that agent holds (those of its last train
/// task, as the agent reconstructed them) and sends the next task's model as the difference from them. The
/// first task of a session, and any task over the memory budget, goes in float32.
extension Coordinator {
    struct HeldParameters {
        var sessionID: UInt64
        var taskID: Int64
        var parameters: [Float]
    }

    /// The parameters of train task `taskID` for `session`: float32 `tensors`, or the difference from what the
    /// agent holds. Records what the agent will hold after it.
    func trainParameters(for session: AgentSessionHandle, taskID: Int64, target: [Float], tensors: [WireTensor])
        -> (tensors: [WireTensor], referenced: ReferencedParameters?) {
        let encoding = configuration.taskEncoding
        guard encoding != .float32, session.capabilities.contains(.compressedTasks) else { return (tensors, nil) }
        if let held = heldParameters[session.clientID], held.sessionID == session.sessionID, held.parameters.count == target.count,
           let (referenced, holds) = ReferencedParameters.encode(target: target, held: held.parameters, heldTaskID: UInt64(held.taskID),
                                                                 shapes: configuration.model.tensorShapes, as: encoding) {
            heldParameters[session.clientID] = HeldParameters(sessionID: session.sessionID, taskID: taskID, parameters: holds)
            return ([], referenced)
        }
        // A copy per session: within the budget only (float32 tasks otherwise, as without the option).
        let copies = heldParameters.keys.contains(session.clientID) ? heldParameters.count : heldParameters.count + 1
        if copies * target.count * MemoryLayout<Float>.size <= configuration.taskEncodingMemoryBytes {
            heldParameters[session.clientID] = HeldParameters(sessionID: session.sessionID, taskID: taskID, parameters: target)
        } else {
            heldParameters[session.clientID] = nil
        }
        return (tensors, nil)
    }
}
