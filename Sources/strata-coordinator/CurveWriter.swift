import Foundation
import StrataCoordinator

/// Appends one CSV row per evaluated version, flushed at once so a killed run keeps its curve.
final class CurveWriter: @unchecked Sendable {
    private let handle: FileHandle
    private let mode: String
    private let lock = NSLock()

    init(path: String, mode: String) throws {
        let exists = FileManager.default.fileExists(atPath: path)
        if !exists { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw CurveError(message: "cannot write --curve-csv \(path): check the directory exists and is writable")
        }
        self.handle = handle
        self.mode = mode
        handle.seekToEndOfFile()
        if !exists { write("mode,elapsed_seconds,version,accuracy,loss,clients,expected_clients,asked_clients,counted\n") }
    }

    func append(_ r: EvaluationResult) {
        write(mode + String(format: ",%.3f,%lld,%.6f,%.6f,%d,%d,%d,%d\n", r.versionElapsedSeconds, r.version, r.accuracy, r.loss, r.clients,
                                   r.expectedClients, r.askedClients, r.counted ? 1 : 0))
    }

    private func write(_ line: String) {
        lock.lock()
        defer { lock.unlock() }
        handle.write(Data(line.utf8))
    }

    struct CurveError: Error, CustomStringConvertible {
        var message: String
        var description: String { message }
    }
}
