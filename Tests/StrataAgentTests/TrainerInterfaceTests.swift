import Foundation
import StrataCore
import Testing
@testable import StrataAgent

/// The local trainer interface's messages (docs/PROTOCOL.md §11.2), encoded and checked without a process.
@Suite struct TrainerInterfaceTests {
    let tensors: [(name: String, shape: [Int])] = [("weight", [2, 3]), ("bias", [3])]

    func reply(_ header: String, _ body: [Float] = []) throws -> (TrainerInterface.ReplyHeader, [UInt8]) {
        let bytes = body.flatMap { value in withUnsafeBytes(of: value.bitPattern.littleEndian) { Array($0) } }
        return (try TrainerInterface.decodeHeader(Array(header.utf8)), bytes)
    }

    @Test func aTrainRequestIsAPrefixAJSONHeaderAndTheArraysInOrder() throws {
        let encoded = TrainerInterface.encode(.train(id: 7, task: 42, baseVersion: 3,
            hyperparameters: .init(learning_rate: 0.5, batch_size: 10, epochs: 2, seed: 9, proximal_mu: 0),
            tensors: [.init(name: "weight", shape: [2, 3], values: Array(repeating: 1, count: 6)), .init(name: "bias", shape: [3], values: [1, 2, 3])]))
        let headerLength = Int(encoded.prefix[0]) | Int(encoded.prefix[1]) << 8 | Int(encoded.prefix[2]) << 16 | Int(encoded.prefix[3]) << 24
        let bodyLength = (4..<12).reversed().reduce(0) { $0 << 8 | Int(encoded.prefix[$1]) }
        #expect(headerLength == encoded.prefix.count - 12)
        #expect(bodyLength == 4 * 9)
        #expect(encoded.arrays == [Array(repeating: 1, count: 6), [1, 2, 3]])
        let json = try JSONSerialization.jsonObject(with: Data(encoded.prefix[12...])) as! [String: Any]
        #expect(json["type"] as? String == "train" && json["id"] as? Int == 7 && json["task"] as? Int == 42 && json["base_version"] as? Int == 3)
        let arrays = json["arrays"] as! [[String: Any]]
        #expect(arrays.map { $0["name"] as? String } == ["weight", "bias"])
        #expect(arrays.map { $0["shape"] as? [Int] } == [[2, 3], [3]])
        #expect((json["hyperparameters"] as! [String: Any])["batch_size"] as? Int == 10)
    }

    @Test func aSetupCarriesTheModelAndTheRows() throws {
        let spec = ModelSpec(kind: .mlp, featureCount: 2, outputCount: 2, hidden: [4])
        let encoded = TrainerInterface.encode(.setup(id: 1, model: .init(spec), featureNames: ["x", "y"], labels: [], source: ["table": "samples"],
                                                     train: ([1, 2, 3, 4], [0, 1]), test: ([5, 6], [1])))
        let json = try JSONSerialization.jsonObject(with: Data(encoded.prefix[12...])) as! [String: Any]
        let model = json["model"] as! [String: Any]
        #expect(model["kind"] as? String == "mlp" && model["hidden"] as? [Int] == [4] && model["activation"] as? String == "relu")
        #expect((model["tensors"] as! [[String: Any]]).map { $0["name"] as? String } == ["layer1.weight", "layer1.bias", "layer2.weight", "layer2.bias"])
        #expect((json["arrays"] as! [[String: Any]]).map { $0["shape"] as? [Int] } == [[2, 2], [2], [1, 2], [1]])
        #expect(encoded.arrays == [[1, 2, 3, 4], [0, 1], [5, 6], [1]])
    }

    @Test func aTrainedReplyIsCheckedAndDecoded() throws {
        let (header, body) = try reply(#"{"type":"trained","id":5,"metrics":{"train_loss":0.25,"eval_accuracy":0.5},"arrays":[{"name":"weight","dtype":"float32","shape":[2,3]},{"name":"bias","dtype":"float32","shape":[3]}]}"#,
                                       [1, 2, 3, 4, 5, 6, 7, 8, 9])
        let decoded = try TrainerInterface.decode(header, body: body, id: 5, expected: .trained(tensors: tensors))
        #expect(decoded == .trained(parameters: [1, 2, 3, 4, 5, 6, 7, 8, 9], trainLoss: 0.25, evalLoss: 0, evalAccuracy: 0.5))
    }

    @Test func everyBrokenReplyIsNamed() throws {
        let good = #"{"name":"weight","dtype":"float32","shape":[2,3]},{"name":"bias","dtype":"float32","shape":[3]}"#
        let nine = [Float](repeating: 1, count: 9)
        let cases: [(String, [Float], TrainerProtocolError.Type, String)] = [
            (#"{"type":"trained","id":4,"metrics":{"train_loss":1},"arrays":[\#(good)]}"#, nine, TrainerProtocolError.self, "request 4"),
            (#"{"type":"evaluated","id":5,"metrics":{"eval_loss":1,"eval_accuracy":1}}"#, [], TrainerProtocolError.self, "expected trained"),
            (#"{"type":"trained","id":5,"metrics":{"train_loss":1},"arrays":[{"name":"weight","dtype":"float32","shape":[3,2]},{"name":"bias","dtype":"float32","shape":[3]}]}"#, nine, TrainerProtocolError.self, "weight [3, 2]"),
            (#"{"type":"trained","id":5,"metrics":{"train_loss":1},"arrays":[{"name":"weight","dtype":"float64","shape":[2,3]},{"name":"bias","dtype":"float32","shape":[3]}]}"#, nine, TrainerProtocolError.self, "float64"),
            (#"{"type":"trained","id":5,"metrics":{"train_loss":1},"arrays":[{"name":"weight","dtype":"float32","shape":[2,3]}]}"#, [Float](repeating: 1, count: 6), TrainerProtocolError.self, "1 arrays"),
            (#"{"type":"trained","id":5,"metrics":{"train_loss":1},"arrays":[\#(good)]}"#, [1, 1, 1, .nan, 1, 1, 1, 1, 1], TrainerProtocolError.self, "parameter 3"),
            (#"{"type":"trained","id":5,"metrics":{"train_loss":1},"arrays":[\#(good)]}"#, [1, 1], TrainerProtocolError.self, "8 bytes"),
            (#"{"type":"trained","id":5,"metrics":{},"arrays":[\#(good)]}"#, nine, TrainerProtocolError.self, "train_loss is missing"),
            (#"{"type":"trained","id":5,"metrics":{"train_loss":-1},"arrays":[\#(good)]}"#, nine, TrainerProtocolError.self, "train_loss is -1"),
        ]
        for (header, body, _, words) in cases {
            let (h, b) = try reply(header, body)
            do {
                _ = try TrainerInterface.decode(h, body: b, id: 5, expected: .trained(tensors: tensors))
                Issue.record("accepted: \(header)")
            } catch {
                #expect("\(error)".contains(words), "\(error) should name \(words)")
            }
        }
        #expect(throws: TrainerProtocolError.self) { try TrainerInterface.decodeHeader(Array("not json".utf8)) }
        let ready = try reply(#"{"type":"ready","id":1,"interface":2}"#)
        #expect(throws: TrainerProtocolError.self) { try TrainerInterface.decode(ready.0, body: ready.1, id: 1, expected: .ready) }
    }

    /// `evaluated` may carry the model's outputs on the evaluation rows; they are checked like parameters.
    @Test func anEvaluatedReplyMayCarryTheModelsOutputs() throws {
        let metrics = #""metrics":{"eval_loss":1,"eval_accuracy":0.5}"#
        let plain = try reply(#"{"type":"evaluated","id":3,\#(metrics)}"#)
        #expect(try TrainerInterface.decode(plain.0, body: plain.1, id: 3, expected: .evaluated(rows: 2, outputs: 3)) == .evaluated(loss: 1, accuracy: 0.5, outputs: nil))
        let good = try reply(#"{"type":"evaluated","id":3,\#(metrics),"arrays":[{"name":"outputs","dtype":"float32","shape":[2,3]}]}"#, [1, 2, 3, 4, 5, 6])
        #expect(try TrainerInterface.decode(good.0, body: good.1, id: 3, expected: .evaluated(rows: 2, outputs: 3))
                == .evaluated(loss: 1, accuracy: 0.5, outputs: [1, 2, 3, 4, 5, 6]))
        let vector = try reply(#"{"type":"evaluated","id":3,\#(metrics),"arrays":[{"name":"outputs","dtype":"float32","shape":[2]}]}"#, [7, 8])
        #expect(try TrainerInterface.decode(vector.0, body: vector.1, id: 3, expected: .evaluated(rows: 2, outputs: 1))
                == .evaluated(loss: 1, accuracy: 0.5, outputs: [7, 8]))
        for (header, body, words) in [
            (#"{"type":"evaluated","id":3,\#(metrics),"arrays":[{"name":"scores","dtype":"float32","shape":[2,3]}]}"#, [Float](repeating: 1, count: 6), "one array, outputs"),
            (#"{"type":"evaluated","id":3,\#(metrics),"arrays":[{"name":"outputs","dtype":"float32","shape":[3,2]}]}"#, [Float](repeating: 1, count: 6), "shape [3, 2]"),
            (#"{"type":"evaluated","id":3,\#(metrics),"arrays":[{"name":"outputs","dtype":"float32","shape":[2,3]}]}"#, [1, 2, 3, .infinity, 5, 6], "row 1"),
            (#"{"type":"evaluated","id":3,\#(metrics),"arrays":[{"name":"outputs","dtype":"float32","shape":[2,3]}]}"#, [1, 2, 3], "12 bytes"),
            (#"{"type":"evaluated","id":3,\#(metrics)}"#, [1, 2], "no array is listed"),
        ] {
            let (h, b) = try reply(header, body)
            do {
                _ = try TrainerInterface.decode(h, body: b, id: 3, expected: .evaluated(rows: 2, outputs: 3))
                Issue.record("accepted: \(header)")
            } catch {
                #expect("\(error)".contains(words), "\(error) should name \(words)")
            }
        }
    }

    @Test func anErrorReplyFailsTheRequestWithItsMessage() throws {
        let (h, b) = try reply(#"{"type":"error","id":3,"message":"ValueError: bad input"}"#)
        #expect(try TrainerInterface.decode(h, body: b, id: 3, expected: .evaluated(rows: 2, outputs: 3)) == .error("ValueError: bad input"))
    }

    @Test func prefixLengthsAreBoundedBeforeAnythingIsRead() throws {
        func prefix(_ h: UInt32, _ b: UInt64) -> [UInt8] {
            withUnsafeBytes(of: h.littleEndian) { Array($0) } + withUnsafeBytes(of: b.littleEndian) { Array($0) }
        }
        #expect(try TrainerInterface.lengths(prefix(10, 36), maxBody: 36) == (10, 36))
        #expect(throws: TrainerProtocolError.self) { try TrainerInterface.lengths(prefix(10, 37), maxBody: 36) }
        #expect(throws: TrainerProtocolError.self) { try TrainerInterface.lengths(prefix(0, 0), maxBody: 36) }
        #expect(throws: TrainerProtocolError.self) { try TrainerInterface.lengths(prefix(UInt32(TrainerInterface.maxHeaderBytes) + 1, 0), maxBody: 36) }
        #expect(throws: TrainerProtocolError.self) { try TrainerInterface.lengths(prefix(10, .max), maxBody: .max) }
    }

    @Test func restartsBackOffAndResetAfterASuccess() {
        var policy = RestartPolicy()
        #expect(policy.delay == .zero)
        var delays: [Duration] = []
        for _ in 0..<8 { policy.failed(); delays.append(policy.delay) }
        #expect(delays == [1, 2, 4, 8, 16, 32, 60, 60].map { Duration.seconds($0) })
        policy.succeeded()
        #expect(policy.delay == .zero)
        for _ in 0..<100 { policy.failed() }
        #expect(policy.delay == .seconds(60))
    }
}
