import Foundation
import StrataCoordinator

/// Appends one CSV row per evaluated version, flushed at once so a killed run keeps its curve.
final class CurveWriter: @unchecked Sendable {
    private let handle: FileHandle
    private let mode: String
    /// A file begun by an older coordinator keeps its header's columns: its rows get no metric columns, or
    /// metric columns but no traffic columns, as its header has.
    private let withMetrics: Bool
    private let withTraffic: Bool
    private let lock = NSLock()

    static let baseHeader = "mode,elapsed_seconds,version,accuracy,loss,clients,expected_clients,asked_clients,counted"
    /// Metrics pooled from the agents' evaluation statistics: empty when a round did not report them (a linear
    /// model has no macro-F1, older agents send no statistics).
    static let metricColumns: [(column: String, metric: String)] = [("rmse", "rmse"), ("mae", "mae"), ("r2", "r2"),
                                                                      ("macro_f1", "macro-f1"), ("auc", "auc")]
    /// What reaching the version cost: deltas received, and model bytes both ways (deltas + task parameters).
    static let trafficColumns = "updates,model_bytes"
    static var metricsHeader: String { baseHeader + "," + metricColumns.map(\.column).joined(separator: ",") }
    static var header: String { metricsHeader + "," + trafficColumns }

    init(path: String, mode: String) throws {
        let exists = FileManager.default.fileExists(atPath: path)
        if !exists { _ = FileManager.default.createFile(atPath: path, contents: nil) }
        guard let handle = FileHandle(forWritingAtPath: path) else {
            throw CurveError(message: "cannot write --curve-csv \(path): check the directory exists and is writable")
        }
        self.handle = handle
        self.mode = mode
        let firstLine = exists ? (try? String(contentsOfFile: path, encoding: .utf8))?.split(separator: "\n", maxSplits: 1).first.map(String.init) : nil
        withMetrics = firstLine.map { $0 == Self.header || $0 == Self.metricsHeader } ?? true
        withTraffic = firstLine.map { $0 == Self.header } ?? true
        handle.seekToEndOfFile()
        if !exists || firstLine == nil { write(Self.header + "\n") }
    }

    func append(_ r: EvaluationResult) {
        var line = mode + String(format: ",%.3f,%lld,%.6f,%.6f,%d,%d,%d,%d", r.versionElapsedSeconds, r.version, r.accuracy, r.loss, r.clients,
                                 r.expectedClients, r.askedClients, r.counted ? 1 : 0)
        if withMetrics {
            for (_, metric) in Self.metricColumns { line += "," + (r.metrics[metric].map { String(format: "%.8g", $0) } ?? "") }
            if withTraffic { line += ",\(r.traffic.updates),\(r.traffic.bytes)" }
        }
        write(line + "\n")
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
