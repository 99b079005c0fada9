import NIOConcurrencyHelpers
import StrataWire

/// An update on its way from a session's reader to the coordinator, taken out exactly once. Whoever takes it
/// holds its only reference, so a large update's frame (a whole model) is freed as soon as the coordinator has
/// folded it, before the step that follows allocates the next model and its task bytes: an update passed as a
/// plain argument would stay alive in the reader's loop and in the task that carried it until the step was over
/// (docs/PERFORMANCE.md, "Models larger than a frame").
final class UpdateDelivery: Sendable {
    private let update: NIOLockedValueBox<Update?>

    init(_ update: consuming Update) {
        self.update = NIOLockedValueBox(update)
    }

    /// The update. Taking it twice is a programming error.
    func take() -> Update {
        update.withLockedValue { held in
            guard let taken = held.take() else { preconditionFailure("an update delivery is taken once") }
            return taken
        }
    }
}

extension Message {
    /// The update this message carries, leaving a payload-free message in its place (so the caller's variable
    /// no longer keeps the update's bytes alive); nil, and the message unchanged, for any other message.
    mutating func takeUpdate() -> Update? {
        guard case .update(let update) = self else { return nil }
        self = .heartbeat(Heartbeat(sequence: 0, timestampNanos: 0, isReply: true))
        return update
    }
}
