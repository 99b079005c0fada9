import Foundation
import StrataCore

/// The local trainer interface (docs/PROTOCOL.md §11) as pure values: requests encoded to bytes, replies
/// checked and decoded from bytes. No I/O here, so every check is unit-tested alone; `TrainerProcess` moves
/// the bytes and `ExternalTrainer` decides what a failure means.
enum TrainerInterface {
    static let version = 1
    /// A header's largest length, either way.
    static let maxHeaderBytes = 16 * 1024 * 1024
    /// Slack allowed in a reply's body beyond the arrays it must carry (none today; room for later keys).
    static let bodySlack = 64 * 1024

    /// One array of a message: its name, shape and values in C order.
    struct Array: Sendable, Equatable {
        var name: String
        var shape: [Int]
        var values: [Float]
    }

    struct ArraySpec: Codable, Equatable, Sendable {
        var name: String
        var dtype: String
        var shape: [Int]
    }

    /// The federation's model as the trainer sees it (§11.2 `model`).
    struct ModelDescription: Codable, Equatable, Sendable {
        var kind: String
        var features: Int
        var outputs: Int
        var classifier: Bool
        var hidden: [Int]?
        var activation: String?
        var tensors: [TensorDescription]

        struct TensorDescription: Codable, Equatable, Sendable {
            var name: String
            var shape: [Int]
        }

        init(_ spec: ModelSpec) {
            kind = spec.kind.rawValue
            features = spec.featureCount
            outputs = spec.outputCount
            classifier = spec.isClassifier
            hidden = spec.kind == .mlp ? spec.hidden : nil
            activation = spec.kind == .mlp ? spec.activation.rawValue : nil
            tensors = spec.tensorShapes.map { TensorDescription(name: $0.name, shape: $0.shape) }
        }
    }

    struct Hyperparameters: Codable, Equatable, Sendable {
        var learning_rate: Double
        var batch_size: Int
        var epochs: Int
        var seed: UInt64
        var proximal_mu: Double
    }

    enum Request: Sendable {
        case setup(id: UInt64, model: ModelDescription, featureNames: [String], labels: [String], source: [String: String],
                   train: (x: [Float], y: [Float]), test: (x: [Float], y: [Float]))
        case train(id: UInt64, task: UInt64, baseVersion: UInt64, hyperparameters: Hyperparameters, tensors: [Array])
        case evaluate(id: UInt64, task: UInt64, baseVersion: UInt64, tensors: [Array])

        var id: UInt64 {
            switch self {
            case .setup(let id, _, _, _, _, _, _), .train(let id, _, _, _, _), .evaluate(let id, _, _, _): id
            }
        }
        var type: String {
            switch self {
            case .setup: "setup"
            case .train: "train"
            case .evaluate: "evaluate"
            }
        }
    }

    /// A request's header and the arrays of its body, in order: the caller writes both (the arrays without a
    /// copy into one buffer).
    struct EncodedRequest {
        var prefix: [UInt8]
        var arrays: [[Float]]
    }

    private struct RequestHeader: Encodable {
        var type: String
        var id: UInt64
        var interface: Int?
        var model: ModelDescription?
        var feature_names: [String]?
        var labels: [String]?
        var source: [String: String]?
        var task: UInt64?
        var base_version: UInt64?
        var hyperparameters: Hyperparameters?
        var arrays: [ArraySpec]?
    }

    static func encode(_ request: Request) -> EncodedRequest {
        var header = RequestHeader(type: request.type, id: request.id)
        var arrays: [(spec: ArraySpec, values: [Float])] = []
        func add(_ name: String, _ shape: [Int], _ values: [Float]) {
            arrays.append((ArraySpec(name: name, dtype: "float32", shape: shape), values))
        }
        switch request {
        case .setup(_, let model, let featureNames, let labels, let source, let train, let test):
            header.interface = version
            header.model = model
            header.feature_names = featureNames
            header.labels = labels
            header.source = source
            let f = model.features
            add("train_x", [train.y.count, f], train.x)
            add("train_y", [train.y.count], train.y)
            add("test_x", [test.y.count, f], test.x)
            add("test_y", [test.y.count], test.y)
        case .train(_, let task, let baseVersion, let hyperparameters, let tensors):
            header.task = task
            header.base_version = baseVersion
            header.hyperparameters = hyperparameters
            for t in tensors { add(t.name, t.shape, t.values) }
        case .evaluate(_, let task, let baseVersion, let tensors):
            header.task = task
            header.base_version = baseVersion
            for t in tensors { add(t.name, t.shape, t.values) }
        }
        if !arrays.isEmpty { header.arrays = arrays.map(\.spec) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding these plain values cannot fail; an empty object keeps the frame well-formed if it ever did.
        let json = (try? encoder.encode(header)) ?? Data("{}".utf8)
        let bodyBytes = arrays.reduce(0) { $0 + $1.values.count * 4 }
        var prefix: [UInt8] = []
        prefix.reserveCapacity(12 + json.count)
        withUnsafeBytes(of: UInt32(json.count).littleEndian) { prefix.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt64(bodyBytes).littleEndian) { prefix.append(contentsOf: $0) }
        prefix.append(contentsOf: json)
        return EncodedRequest(prefix: prefix, arrays: arrays.map(\.values))
    }

    /// What a reply's 12-byte prefix says; checked before the header or body is read.
    static func lengths(_ prefix: [UInt8], maxBody: Int) throws(TrainerProtocolError) -> (header: Int, body: Int) {
        guard prefix.count == 12 else { throw .malformed("a message prefix is 12 bytes, got \(prefix.count)") }
        var h: UInt32 = 0, b: UInt64 = 0
        for i in (0..<4).reversed() { h = h << 8 | UInt32(prefix[i]) }
        for i in (4..<12).reversed() { b = b << 8 | UInt64(prefix[i]) }
        guard h >= 2, h <= UInt32(maxHeaderBytes) else { throw .malformed("header length \(h) is outside 2…\(maxHeaderBytes)") }
        guard b <= UInt64(maxBody) else { throw .tooLarge("the body of \(b) bytes exceeds the \(maxBody) bytes this reply may carry") }
        return (Int(h), Int(b))
    }

    /// A reply's header, as read: the keys this side knows (others are ignored).
    struct ReplyHeader: Decodable, Sendable {
        var type: String
        var id: UInt64?
        var interface: Int?
        var name: String?
        var message: String?
        var metrics: [String: Double]?
        var arrays: [ArraySpec]?
    }

    /// What the agent expects next, and the decoded reply.
    enum Expectation: Sendable {
        case ready
        /// `trained` carrying exactly `tensors` (names and shapes, in order).
        case trained(tensors: [(name: String, shape: [Int])])
        /// `evaluated`, with optionally the model's outputs on the `rows` evaluation rows (`outputs` × values each).
        case evaluated(rows: Int, outputs: Int)
    }

    enum Reply: Sendable, Equatable {
        case ready(name: String)
        /// The new parameters, flat in manifest order.
        case trained(parameters: [Float], trainLoss: Float, evalLoss: Float, evalAccuracy: Float)
        /// `outputs`: the model's outputs on the evaluation rows, row-major, when the trainer sent them (the agent
        /// then computes the evaluation and its statistics itself).
        case evaluated(loss: Float, accuracy: Float, outputs: [Float]?)
        /// The trainer could not do the request; it keeps running.
        case error(String)
    }

    static func decodeHeader(_ bytes: [UInt8]) throws(TrainerProtocolError) -> ReplyHeader {
        do {
            return try JSONDecoder().decode(ReplyHeader.self, from: Data(bytes))
        } catch {
            let text = String(decoding: bytes.prefix(200), as: UTF8.self)
            throw .malformed("the reply header is not the JSON object §11 describes (\(text)): \(error)")
        }
    }

    /// Checks `header` against what was asked (`id`, `expected`) and the body's length, and decodes it.
    static func decode(_ header: ReplyHeader, body: [UInt8], id: UInt64, expected: Expectation) throws(TrainerProtocolError) -> Reply {
        if header.type == "error" {
            guard header.id == id else { throw .malformed("an error reply for request \(header.id.map(String.init) ?? "none") while request \(id) waits") }
            let message = header.message ?? "(no message)"
            return .error(String(message.prefix(1000)))
        }
        guard header.id == id else { throw .malformed("a reply for request \(header.id.map(String.init) ?? "none") while request \(id) waits") }
        let arrays = header.arrays ?? []
        switch expected {
        case .ready:
            guard header.type == "ready" else { throw .malformed("expected ready, got \(header.type)") }
            guard header.interface == version else { throw .malformed("the trainer speaks interface \(header.interface.map(String.init) ?? "none"), this agent \(version)") }
            guard arrays.isEmpty, body.isEmpty else { throw .malformed("ready carries no arrays") }
            return .ready(name: header.name ?? "unnamed trainer")
        case .evaluated(let rows, let width):
            guard header.type == "evaluated" else { throw .malformed("expected evaluated, got \(header.type)") }
            let loss = try metric(header, "eval_loss", required: true)
            let accuracy = try metric(header, "eval_accuracy", required: true)
            guard let spec = arrays.first else {
                guard body.isEmpty else { throw .malformed("the body holds \(body.count) bytes but no array is listed") }
                return .evaluated(loss: loss, accuracy: accuracy, outputs: nil)
            }
            // One array, `outputs`: rows × outputs (a model of one output may send a vector of rows).
            guard arrays.count == 1, spec.name == "outputs" else {
                throw .wrongArrays("evaluated may carry one array, outputs; got \(arrays.map(\.name).joined(separator: ", "))")
            }
            guard spec.shape == [rows, width] || (width == 1 && spec.shape == [rows]) else {
                throw .wrongArrays("outputs has shape \(spec.shape); the \(rows) evaluation rows and \(width) outputs need [\(rows), \(width)]")
            }
            guard spec.dtype == "float32" else { throw .wrongArrays("outputs has dtype \(spec.dtype); only float32 is allowed") }
            guard body.count == 4 * rows * width else { throw .malformed("the body holds \(body.count) bytes; outputs needs \(4 * rows * width)") }
            let outputs = try finiteFloats(body) { i, value in "output \(i % width) of evaluation row \(i / width) is \(value)" }
            return .evaluated(loss: loss, accuracy: accuracy, outputs: outputs)
        case .trained(let tensors):
            guard header.type == "trained" else { throw .malformed("expected trained, got \(header.type)") }
            guard arrays.count == tensors.count else {
                throw .wrongArrays("\(arrays.count) arrays returned for a model of \(tensors.count) tensors (\(tensors.map(\.name).joined(separator: ", ")))")
            }
            var expectedBytes = 0
            for (got, want) in zip(arrays, tensors) {
                guard got.name == want.name, got.shape == want.shape else {
                    throw .wrongArrays("returned \(got.name) \(got.shape) where the model has \(want.name) \(want.shape)")
                }
                guard got.dtype == "float32" else { throw .wrongArrays("\(got.name) has dtype \(got.dtype); only float32 is allowed") }
                expectedBytes += 4 * (TensorShape.elementCount(want.shape) ?? 0)
            }
            guard body.count == expectedBytes else { throw .malformed("the body holds \(body.count) bytes; its arrays need \(expectedBytes)") }
            let parameters = try finiteFloats(body) { i, value in "returned parameter \(i) (flat, manifest order) is \(value)" }
            let trainLoss = try metric(header, "train_loss", required: true)
            return .trained(parameters: parameters, trainLoss: trainLoss,
                            evalLoss: try metric(header, "eval_loss", required: false),
                            evalAccuracy: try metric(header, "eval_accuracy", required: false))
        }
    }

    /// The body's little-endian float32 values; `nonFinite(describe(index, value))` at the first NaN or infinity.
    private static func finiteFloats(_ body: [UInt8], describe: (Int, Float) -> String) throws(TrainerProtocolError) -> [Float] {
        var values = [Float](repeating: 0, count: body.count / 4)
        for i in values.indices {
            let bits = UInt32(body[4 * i]) | UInt32(body[4 * i + 1]) << 8 | UInt32(body[4 * i + 2]) << 16 | UInt32(body[4 * i + 3]) << 24
            values[i] = Float(bitPattern: bits)
            guard values[i].isFinite else { throw .nonFinite(describe(i, values[i])) }
        }
        return values
    }

    private static func metric(_ header: ReplyHeader, _ key: String, required: Bool) throws(TrainerProtocolError) -> Float {
        guard let value = header.metrics?[key] else {
            if required { throw .malformed("metrics.\(key) is missing") }
            return 0
        }
        guard value.isFinite, value >= 0 else { throw .nonFinite("metrics.\(key) is \(value) (finite and ≥ 0 required)") }
        return Float(value)
    }
}

/// A reply that breaks §11: the stream can no longer be trusted, so the trainer is restarted.
enum TrainerProtocolError: Error, Equatable, CustomStringConvertible {
    case malformed(String)
    case tooLarge(String)
    case wrongArrays(String)
    case nonFinite(String)

    var description: String {
        switch self {
        case .malformed(let s): "malformed reply: \(s)"
        case .tooLarge(let s): "reply too large: \(s)"
        case .wrongArrays(let s): "wrong arrays: \(s)"
        case .nonFinite(let s): "non-finite value: \(s)"
        }
    }
}
