import Foundation

/// A plain-text table: left-aligned columns separated by two spaces, a header row, no borders (like kubectl).
public struct Table: Sendable, Hashable {
    public var headers: [String]
    public var rows: [[String]] = []

    public init(_ headers: [String]) { self.headers = headers }

    public mutating func add(_ row: [String]) {
        precondition(row.count == headers.count, "a row needs \(headers.count) cells")
        rows.append(row)
    }

    public func render() -> String {
        var widths = headers.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            var text = ""
            for (i, cell) in cells.enumerated() {
                if i == cells.count - 1 {
                    text += cell
                } else {
                    text += cell + String(repeating: " ", count: widths[i] - cell.count + 2)
                }
            }
            return text
        }
        return ([line(headers)] + rows.map(line)).joined(separator: "\n") + "\n"
    }
}

/// Short human forms of the values the tables show.
public enum Display {
    public static func number(_ value: Double?, digits: Int = 4) -> String {
        guard let value, value.isFinite else { return "-" }
        // Beyond what fixed digits can hold in an Int64 (a diverged loss, an RMSE in large units): %g.
        guard abs(value * pow10(digits)) < 1e18 else { return String(format: "%.\(max(1, digits))g", value) }
        var text = String(Int64((value * pow10(digits)).rounded()))
        let negative = text.hasPrefix("-")
        if negative { text.removeFirst() }
        while text.count <= digits { text = "0" + text }
        let split = text.index(text.endIndex, offsetBy: -digits)
        return (negative ? "-" : "") + text[..<split] + (digits > 0 ? "." + text[split...] : "")
    }

    /// An evaluation metric: 4 decimals, or 5 significant digits when its magnitude makes decimals useless
    /// (an RMSE of 0.00012 or of 123456 in the target's units).
    public static func metric(_ value: Double?) -> String {
        guard let value, value.isFinite else { return "-" }
        if value != 0, abs(value) < 0.01 || abs(value) >= 1e5 { return String(format: "%.5g", value) }
        return number(value)
    }

    /// Seconds as "850ms", "2.35s", "4m10s", "3h05m".
    public static func duration(_ seconds: Double?) -> String {
        guard let seconds, seconds.isFinite, seconds >= 0 else { return "-" }
        if seconds < 1 { return "\(Int((seconds * 1000).rounded()))ms" }
        if seconds < 60 { return number(seconds, digits: 2) + "s" }
        let whole = Int(seconds)
        if whole < 3600 { return "\(whole / 60)m\(pad(whole % 60))s" }
        return "\(whole / 3600)h\(pad(whole % 3600 / 60))m"
    }

    /// How long ago a time (seconds since 1970) was, relative to `now`.
    public static func age(_ time: Double?, now: Double) -> String {
        guard let time else { return "-" }
        return duration(max(0, now - time)) + " ago"
    }

    public static func optional<T>(_ value: T?) -> String { value.map { "\($0)" } ?? "-" }

    private static func pad(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
    private static func pow10(_ n: Int) -> Double { (0..<n).reduce(1.0) { value, _ in value * 10 } }
}
