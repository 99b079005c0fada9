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

    /// The inputs that once crashed, each in its own child process, so one does not hide another.
    static let regressionInputs: [String] = FuzzTarget.allCases.flatMap { target in
        Replayer.inputFiles([corpus + "/" + target.rawValue])
            .filter { ($0 as NSString).lastPathComponent.hasPrefix("regress-") }
            .map { target.rawValue + "/" + ($0 as NSString).lastPathComponent }
    }

    @Test(arguments: regressionInputs)
    func regressionInputReplaysWithoutCrashing(input: String) async throws {
        let parts = input.split(separator: "/")
        try await replayInChildProcess(target: String(parts[0]), files: [Self.corpus + "/" + input])
    }

    @Test(arguments: FuzzTarget.allCases)
    func corpusReplaysWithoutBreakingAnInvariant(target: FuzzTarget) async throws {
        let files = Replayer.inputFiles([Self.corpus + "/" + target.rawValue])
            .filter { !($0 as NSString).lastPathComponent.hasPrefix("regress-") }
        try await replayInChildProcess(target: target.rawValue, files: files)
    }

    /// Replays `files` in a child process (an exit test): an input that traps fails the test, and the
    /// child's progress log names it, instead of the trap killing the whole test run.
    func replayInChildProcess(target name: String, files: [String]) async throws {
        // The child's last lines say which input it was on (a failed exit test returns no output).
        let log = NSTemporaryDirectory() + "strata-fuzz-replay-\(name)-\(UUID().uuidString.prefix(8)).log"
        FileManager.default.createFile(atPath: log, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: log) }
        let result = await #expect(processExitsWith: .success) { [files = files as [String], name = name as String, log = log as String] in
            let output = FileHandle(forWritingAtPath: log)!
            let replayer = Replayer(target: FuzzTarget(rawValue: name)!)
            var failures = 0
            for file in files {
                output.write(Data("replaying \(file)\n".utf8))
                do {
                    try await replayer.run(Array(FileManager.default.contents(atPath: file) ?? Data()))
                } catch {
                    output.write(Data("FAIL \(file): \(error)\n".utf8))
                    failures += 1
                }
            }
            output.write(Data("replayed, \(failures) failures\n".utf8))
            if failures > 0 { exit(1) }
        }
        if result == nil {
            let lines = String(decoding: FileManager.default.contents(atPath: log) ?? Data(), as: UTF8.self).split(separator: "\n")
            Issue.record("replaying \(name) inputs failed (if the last line is 'replaying X', X crashed; reproduce with `swift run strata-fuzz \(name) X`):\n\(lines.suffix(4).joined(separator: "\n"))")
        }
    }
}
