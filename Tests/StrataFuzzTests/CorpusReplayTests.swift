import Foundation
import NIOCore
import StrataCore
import StrataFuzzTargets
import StrataWire
import Testing

/// The fuzz corpus (Fuzz/corpus/<target>), crash reproducers included, replayed through the same target
/// functions libFuzzer calls, in the normal build: an input that once crashed, or any seed that breaks an
/// invariant after a change, fails `swift test` without a fuzz build.
@Suite struct CorpusReplayTests {
    static let corpus = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/corpus").path

    @Test func decodeCorpusHoldsFramesOfEveryMessageType() throws {
        // Seeds from real encoded messages (`strata-fuzz make-seeds`); a lost directory or seed would
        // make the replay below vacuous.
        var types = Set<MessageType>()
        for file in Replayer.inputFiles([Self.corpus + "/decode"]) {
            let data = try #require(FileManager.default.contents(atPath: file))
            var buffer = ByteBuffer(bytes: data.dropFirst())  // after the control byte
            while let message = try? WireCodec.decodeFrame(from: &buffer, maxPayloadBytes: FrameHeader.defaultMaxPayloadBytes) {
                types.insert(message.type)
            }
        }
        #expect(types == Set(MessageType.allCases))
    }

    @Test func coordinatorCorpusRunsEveryAggregationMode() throws {
        var modes = Set<AggregationMode>()
        for file in Replayer.inputFiles([Self.corpus + "/coordinator"]) {
            let first = try #require(FileManager.default.contents(atPath: file)).first ?? 0
            modes.insert(AggregationMode.allCases[Int(first) % AggregationMode.allCases.count])
        }
        #expect(modes == Set(AggregationMode.allCases))
    }

    /// In a child process (an exit test): an input that traps fails this test and names itself in the
    /// captured standard error, instead of killing the whole test run.
    @Test(arguments: FuzzTarget.allCases)
    func corpusReplaysWithoutBreakingAnInvariant(target: FuzzTarget) async {
        let directory = Self.corpus + "/" + target.rawValue
        let name = target.rawValue
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) { [directory = directory as String, name = name as String] in
            let replayer = Replayer(target: FuzzTarget(rawValue: name)!)
            var failures = 0
            for file in Replayer.inputFiles([directory]) {
                FileHandle.standardError.write(Data("replaying \(file)\n".utf8))
                do {
                    try await replayer.run(Array(FileManager.default.contents(atPath: file) ?? Data()))
                } catch {
                    FileHandle.standardError.write(Data("FAIL \(file): \(error)\n".utf8))
                    failures += 1
                }
            }
            if failures > 0 { exit(1) }
        }
        if let result, result.exitStatus != .exitCode(0) {
            let lines = String(decoding: result.standardErrorContent, as: UTF8.self).split(separator: "\n")
            Issue.record("replaying Fuzz/corpus/\(name) failed; last lines of its output:\n\(lines.suffix(6).joined(separator: "\n"))")
        }
    }
}
