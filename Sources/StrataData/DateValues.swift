/// Dates and timestamps read as numbers, for the columns a user names with `--date-columns`: the number of
/// days since 1970-01-01 00:00 UTC, with the time of day as a fraction (2024-03-01 12:00 → 19783.5).
///
/// Days rather than seconds: a feature is a float32, whose 24-bit significand holds today's day count to a
/// few seconds but today's Unix time only to about two minutes; and the federated standardisation makes the
/// unit irrelevant to training anyway.
public enum DateValues {
    /// Reads a value of a date column: text holding an ISO 8601 / SQL date (`2024-03-01`), optionally with a
    /// time (`2024-03-01 12:34`, `2024-03-01T12:34:56.25`) and a UTC offset (`Z`, `+02`, `+0530`, `-05:00`);
    /// NULL and empty text are missing. A number is refused: the column is then already numeric (Unix time,
    /// a Julian day) and needs no `--date-columns`, and guessing its unit would silently be wrong.
    static func feature(_ value: DatabaseCell) -> NumericCell {
        switch value {
        case .null: return .missing
        case .integer(let v): return .notNumber("\(v)")
        case .real(let v): return .notNumber("\(v)")
        case .blob(let count): return .notNumber("<blob of \(count) bytes>")
        case .text(let s):
            let text = ColumnValues.trimmed(s)
            if text.isEmpty { return .missing }
            guard let days = days(sinceEpoch: text) else { return .notNumber(ColumnValues.shown(text)) }
            return .number(days, .real)
        }
    }

    /// Days since 1970-01-01T00:00Z of a date or timestamp in the forms `feature` accepts; nil for anything
    /// else, including impossible dates (2023-02-29, 24:00, a minute 60).
    public static func days(sinceEpoch text: String) -> Double? {
        var scanner = Scanner(Array(text.utf8))
        guard let year = scanner.digits(exactly: 4), scanner.take(UInt8(ascii: "-")),
              let month = scanner.digits(exactly: 2), scanner.take(UInt8(ascii: "-")),
              let day = scanner.digits(exactly: 2),
              (1...12).contains(month), (1...daysIn(month: month, year: year)).contains(day), year >= 1 else { return nil }
        var seconds = 0.0
        if scanner.take(UInt8(ascii: "T")) || scanner.take(UInt8(ascii: "t")) || scanner.take(UInt8(ascii: " ")) {
            guard let hour = scanner.digits(exactly: 2), scanner.take(UInt8(ascii: ":")),
                  let minute = scanner.digits(exactly: 2), hour < 24, minute < 60 else { return nil }
            seconds = Double(hour * 3600 + minute * 60)
            if scanner.take(UInt8(ascii: ":")) {
                // 60: a leap second, as ISO 8601 allows.
                guard let second = scanner.digits(exactly: 2), second <= 60 else { return nil }
                seconds += Double(second)
                if scanner.take(UInt8(ascii: ".")) || scanner.take(UInt8(ascii: ",")) {
                    guard let fraction = scanner.fraction() else { return nil }
                    seconds += fraction
                }
            }
            if scanner.take(UInt8(ascii: "Z")) || scanner.take(UInt8(ascii: "z")) {
                // UTC.
            } else if let sign = scanner.sign() {
                guard let hours = scanner.digits(exactly: 2), hours <= 14 else { return nil }
                var minutes = 0
                if scanner.take(UInt8(ascii: ":")) {
                    guard let m = scanner.digits(exactly: 2) else { return nil }
                    minutes = m
                } else if let m = scanner.digits(exactly: 2) {
                    minutes = m
                }
                guard minutes < 60 else { return nil }
                seconds -= Double(sign * (hours * 3600 + minutes * 60))
            }
        }
        guard scanner.atEnd else { return nil }
        return Double(daysFromCivil(year: year, month: month, day: day)) + seconds / 86_400
    }

    /// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (Howard Hinnant's days_from_civil).
    static func daysFromCivil(year: Int, month: Int, day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    /// Reads ASCII digits and signs off a value; never traps (at most 9 digits make an integer).
    private struct Scanner {
        let bytes: [UInt8]
        var at = 0
        init(_ bytes: [UInt8]) { self.bytes = bytes }

        var atEnd: Bool { at == bytes.count }

        mutating func take(_ byte: UInt8) -> Bool {
            guard at < bytes.count, bytes[at] == byte else { return false }
            at += 1
            return true
        }

        mutating func digits(exactly count: Int) -> Int? {
            guard at + count <= bytes.count else { return nil }
            var value = 0
            for byte in bytes[at..<(at + count)] {
                guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { return nil }
                value = value * 10 + Int(byte - UInt8(ascii: "0"))
            }
            at += count
            return value
        }

        /// The digits after a decimal separator, as a fraction of a second (at least one digit).
        mutating func fraction() -> Double? {
            var value = 0.0, scale = 1.0, count = 0
            while at < bytes.count, bytes[at] >= UInt8(ascii: "0"), bytes[at] <= UInt8(ascii: "9") {
                if count < 9 { scale /= 10; value += Double(bytes[at] - UInt8(ascii: "0")) * scale }
                count += 1
                at += 1
            }
            return count > 0 ? value : nil
        }

        mutating func sign() -> Int? {
            if take(UInt8(ascii: "+")) { return 1 }
            if take(UInt8(ascii: "-")) { return -1 }
            return nil
        }
    }
}
