import Foundation
import StrataFuzzTargets

// Two builds of one program (docs/SECURITY.md#fuzzing):
// - normal: `strata-fuzz decode|coordinator PATH...` replays files (a corpus directory, a crash
//   reproducer) through the target and reports each failure; no libFuzzer needed.
// - `-sanitize=fuzzer -D STRATA_LIBFUZZER` (Deploy/fuzz.sh): libFuzzer's driver over the target named by
//   STRATA_FUZZ_TARGET, with libFuzzer's own flags and corpus arguments.

private func printError(_ text: String) {
    FileHandle.standardError.write(Data(text.utf8))
}

#if STRATA_LIBFUZZER

nonisolated(unsafe) private var replayer: Replayer?

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    do {
        try replayer!.runBlocking(bytes)
    } catch {
        // A broken invariant: crash, so libFuzzer keeps the input.
        fatalError("invariant broken: \(error)")
    }
    return 0
}

@_silgen_name("LLVMFuzzerRunDriver")
private func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
) -> CInt

/// SwiftPM links an executable with `main` aliased to `<module>_main` (its `@main` entry point, renamed so
/// that tests can import executables); with no `@main` here, this is that symbol, and it hands control
/// to libFuzzer's documented driver entry (`LLVMFuzzerRunDriver`) instead of libFuzzer's own `main`.
@_cdecl("strata_fuzz_main")
public func strataFuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    let name = ProcessInfo.processInfo.environment["STRATA_FUZZ_TARGET"] ?? "decode"
    guard let target = FuzzTarget(rawValue: name) else {
        printError("strata-fuzz: STRATA_FUZZ_TARGET=\(name) is not one of \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))\n")
        return 2
    }
    replayer = Replayer(target: target)
    var count = argc
    var arguments = argv
    return runFuzzerDriver(&count, &arguments, fuzzOneInput)
}

#else

@main
struct StrataFuzz {
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == "make-seeds", arguments.count == 2 {
            do {
                try Seeds.write(to: arguments[1])
                exit(0)
            } catch {
                printError("strata-fuzz make-seeds: \(error)\n")
                exit(1)
            }
        }
        guard let name = arguments.first, let target = FuzzTarget(rawValue: name), arguments.count >= 2 else {
            printError("""
                usage: strata-fuzz decode|coordinator PATH...
                       strata-fuzz make-seeds DIR
                Replays every input file (directories: the files in them) through the fuzz target; exits 1 if
                any input breaks an invariant. make-seeds writes the seed inputs (DIR/decode, DIR/coordinator). Fuzzing itself: Deploy/fuzz.sh (docs/SECURITY.md#fuzzing).

                """)
            exit(2)
        }
        let files = Replayer.inputFiles(Array(arguments.dropFirst()))
        let replayer = Replayer(target: target)
        var failures = 0
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else {
                printError("\(file): cannot read\n")
                failures += 1
                continue
            }
            // Named before it runs: if it traps, the last line says which input did it.
            printError("\(file)\n")
            do {
                try await replayer.run(Array(data))
            } catch {
                print("FAIL \(file): \(error)")
                failures += 1
            }
        }
        print("strata-fuzz \(target.rawValue): \(files.count) inputs, \(failures) failures")
        exit(failures == 0 && !files.isEmpty ? 0 : 1)
    }
}

#endif
