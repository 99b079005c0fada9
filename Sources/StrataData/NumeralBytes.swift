extension ColumnValues {
    /// A number a database rendered as text, read straight from its bytes without making a `String`: the
    /// agent's hot path through an ODBC driver, which sends every number as text (60 million of them for a
    /// million rows of 60 features). Takes only a plain numeral — optional sign, digits with an optional
    /// decimal point, optional exponent, nothing around it — and returns what `ColumnValues.numeral` would:
    /// `.integer` for a whole number of an integer column that fits Int64, `.real` otherwise. Returns nil
    /// for anything else (whitespace, words, `NaN`), which the caller reads the general way.
    ///
    /// Up to 15 significant digits and a power of ten within 10^±22 the value is exact arithmetic, correctly
    /// rounded (Clinger's fast path: both factors are exact doubles, so one multiplication or division rounds
    /// once); longer numerals go through `Double(String)`.
    public static func numeralCell(_ bytes: UnsafeRawBufferPointer, integer: Bool) -> DatabaseCell? {
        let n = bytes.count
        guard n > 0, n <= 1100 else { return nil }
        let zero = UInt8(ascii: "0")
        var i = 0
        var negative = false
        if bytes[0] == UInt8(ascii: "-") { negative = true; i = 1 } else if bytes[0] == UInt8(ascii: "+") { i = 1 }
        var mantissa: UInt64 = 0
        var significant = 0, fractionDigits = 0
        var anyDigit = false, point = false, exponentPart = false
        while i < n {
            let byte = bytes[i]
            if byte >= zero && byte <= zero + 9 {
                anyDigit = true
                if mantissa != 0 || byte != zero {
                    significant += 1
                    if significant <= 19 { mantissa = mantissa &* 10 &+ UInt64(byte - zero) }
                }
                if point { fractionDigits += 1 }
            } else if byte == UInt8(ascii: "."), !point {
                point = true
            } else {
                break
            }
            i += 1
        }
        guard anyDigit else { return nil }
        var exponent = 0
        if i < n, bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E") {
            exponentPart = true
            i += 1
            var exponentNegative = false
            if i < n, bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "+") { exponentNegative = bytes[i] == UInt8(ascii: "-"); i += 1 }
            var exponentDigits = 0
            while i < n, bytes[i] >= zero, bytes[i] <= zero + 9 {
                if exponent < 100_000 { exponent = exponent * 10 + Int(bytes[i] - zero) }
                exponentDigits += 1
                i += 1
            }
            guard exponentDigits > 0 else { return nil }
            if exponentNegative { exponent = -exponent }
        }
        guard i == n else { return nil }

        if integer, !point, !exponentPart, significant <= 18 {
            let magnitude = Int64(mantissa)   // < 10^18: fits
            return .integer(negative ? -magnitude : magnitude)
        }
        let power = exponent - fractionDigits
        if significant <= 15, (-22...22).contains(power) {
            let value = power >= 0 ? Double(mantissa) * exactPowersOfTen[power] : Double(mantissa) / exactPowersOfTen[-power]
            return .real(negative ? -value : value)
        }
        // A long numeral: the general conversion, on text already known to be a numeral.
        let text = String(decoding: bytes, as: UTF8.self)
        if integer, !point, !exponentPart, let v = Int64(text) { return .integer(v) }
        return Double(text).map { .real($0) }
    }

    /// 10^0 … 10^22: every one an exact double.
    private static let exactPowersOfTen: [Double] = [
        1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
    ]
}
