import Foundation
import StrataStore

/// An import's progress on stderr: a line every few seconds (none for a file done sooner), with rows so far and
/// rows per second, so that a long import shows it is moving and how long it will take.
struct ImportProgress {
    let file: String
    let interval: Duration = .seconds(3)
    private let clock = ContinuousClock()
    private var phase: CSVImport.Progress.Phase?
    private var phaseStart: ContinuousClock.Instant
    private var lastLine: ContinuousClock.Instant

    init(file: String) {
        self.file = file
        phaseStart = clock.now
        lastLine = phaseStart
    }

    mutating func update(_ progress: CSVImport.Progress) {
        let now = clock.now
        if progress.phase != phase {
            phase = progress.phase
            phaseStart = now
        }
        guard now - lastLine >= interval else { return }
        lastLine = now
        let seconds = Double((now - phaseStart).components.seconds) + Double((now - phaseStart).components.attoseconds) / 1e18
        // Not from the first milliseconds of a phase: that rate would mean nothing.
        let rate = seconds >= 0.5 ? Int((Double(progress.rows) / seconds).rounded()) : nil
        var line: String
        switch progress.phase {
        case .reading:
            line = "reading \(file) for the types: \(Self.grouped(progress.rows)) rows"
            if progress.totalBytes > 0 { line += " (\(Self.percent(progress.bytes, of: progress.totalBytes)) of the file)" }
        case .inserting:
            line = "inserting: \(Self.grouped(progress.rows))"
            if let total = progress.totalRows, total > 0 { line += " of \(Self.grouped(total)) rows (\(Self.percent(Int64(progress.rows), of: Int64(total))))" } else { line += " rows" }
        }
        if let rate { line += ", \(Self.grouped(rate)) rows/s" }
        line += "\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    static func percent(_ part: Int64, of whole: Int64) -> String {
        "\(Int((Double(part) / Double(whole) * 100).rounded(.down))) %"
    }

    /// 1234567 → 1,234,567.
    static func grouped(_ value: Int) -> String {
        let digits = String(value.magnitude)
        var out = ""
        for (i, digit) in digits.enumerated() {
            if i > 0, (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(digit)
        }
        return (value < 0 ? "-" : "") + out
    }
}
