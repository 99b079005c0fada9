import ArgumentParser
import Foundation

/// One measured figure next to the limit it is judged against.
struct BenchResult: Codable, Sendable {
    enum Direction: String, Codable, Sendable {
        /// ratio = figure / limit; the goal is a minimum (e.g. fold throughput ≥ 0.8 × memory bandwidth).
        case higherIsBetter = "higher-is-better"
        /// ratio = figure / limit; the goal is a maximum (e.g. ingest CPU ≤ 2 × decrypt CPU).
        case lowerIsBetter = "lower-is-better"
    }

    var benchmark: String
    var figure: String
    var value: Double
    var unit: String
    var limit: Double
    var limitUnit: String
    var limitDescription: String
    var direction: Direction
    /// nil when the figure has no goal of its own (printed for information).
    var goal: Double?
    var details: [String: Double] = [:]

    var ratio: Double { limit == 0 ? .nan : value / limit }
    var meetsGoal: Bool? {
        guard let goal else { return nil }
        switch direction {
        case .higherIsBetter: return ratio >= goal
        case .lowerIsBetter: return ratio <= goal
        }
    }

    var line: String {
        let verdict: String
        switch meetsGoal {
        case .some(true): verdict = " PASS"
        case .some(false): verdict = " MISS"
        case .none: verdict = ""
        }
        let goalText = goal.map { " (goal \(direction == .higherIsBetter ? ">=" : "<=") \(format($0)))" } ?? ""
        return "\(benchmark) · \(figure): \(format(value)) \(unit) | limit \(format(limit)) \(limitUnit) (\(limitDescription)) | ratio \(format(ratio))\(goalText)\(verdict)"
    }
}

func format(_ value: Double) -> String {
    guard value.isFinite else { return "\(value)" }
    let magnitude = abs(value)
    if magnitude >= 100 { return String(format: "%.0f", value) }
    if magnitude >= 10 { return String(format: "%.1f", value) }
    if magnitude >= 0.01 { return String(format: "%.3f", value) }
    return String(format: "%.3g", value)
}

struct BenchOutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Also print one JSON object per result on stdout.")
    var json = false

    func report(_ results: [BenchResult]) {
        for result in results {
            print(result.line)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                if let data = try? encoder.encode(result), let text = String(data: data, encoding: .utf8) { print(text) }
            }
        }
    }
}

/// Progress for long measurements, on stderr so stdout stays parseable.
func progress(_ text: String) {
    FileHandle.standardError.write(Data("· \(text)\n".utf8))
}

/// CPU time (user + system) of this process so far, in seconds.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    func seconds(_ t: timeval) -> Double { Double(t.tv_sec) + Double(t.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// Resident set size of a process (default: this one), in bytes, from /proc.
func residentBytes(pid: Int32? = nil) -> Int? {
    let path = pid.map { "/proc/\($0)/statm" } ?? "/proc/self/statm"
    guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return nil }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// Best (minimum) wall time of `repetitions` runs of `body`, in seconds.
func bestTime(repetitions: Int, _ body: () throws -> Void) rethrows -> Double {
    var best = Double.infinity
    for _ in 0..<repetitions {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
    }
    return best
}
