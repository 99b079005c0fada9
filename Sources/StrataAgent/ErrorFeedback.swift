import StrataCore
import StrataWire

/// Error feedback for lossy delta encodings (Seide et al. 2014; Stich, Cordonnier & Jaggi 2018; Karimireddy et
/// al. 2019): what the encoding could not carry is kept and added to the next delta, so nothing is lost, only
/// delayed. `e ← (Δ + e) − decode(encode(Δ + e))`. Pure: the agent's session holds one per process.
struct ErrorFeedback: Sendable {
    /// What was left out of the deltas sent so far (empty: nothing yet).
    private(set) var residual: [Float] = []

    /// The compressed form of `delta` plus what earlier encodings left out; remembers what this one leaves out.
    /// Nil (and nothing remembered) for float32.
    mutating func compress(_ delta: [Float], spec: ModelSpec, as encoding: DeltaEncoding) -> CompressedTensors? {
        guard encoding != .float32 else { return nil }
        if residual.count != delta.count { residual = [Float](repeating: 0, count: delta.count) }
        var corrected = delta
        for i in corrected.indices { corrected[i] += residual[i] }
        guard let compressed = CompressedTensors.encode(corrected, shapes: spec.tensorShapes, as: encoding) else { return nil }
        let sent = compressed.decodedValues()
        var finite = true
        for i in residual.indices {
            residual[i] = corrected[i] - sent[i]
            if !residual[i].isFinite { finite = false }
        }
        // A non-finite delta is refused by the coordinator; it must not poison every later one.
        if !finite { reset() }
        return compressed
    }

    /// Forgets what was left out (a new federation or model: it belongs to the old one).
    mutating func reset() { residual = [] }
}
