import Foundation

/// One value of a database row as a source hands it over: SQLite's storage classes, which every source maps
/// its column types to (an ODBC source: integer types → `integer`, floating and decimal types → `real`, character
/// types → `text`, binary → `blob`).
public enum DatabaseCell: Sendable, Hashable {
    case null
    case integer(Int64)
    /// May be NaN or infinite (a PostgreSQL `'NaN'::float8`): refused as a value, never trapped on.
    case real(Double)
    case text(String)
    /// Only its size is kept, for the error message.
    case blob(bytes: Int)
}

/// One value read as a number, the way docs/PROTOCOL.md §8 describes.
enum NumericCell: Equatable {
    /// NULL, or text that is empty or only whitespace (what `sqlite3 .import` stores for an empty CSV field).
    case missing
    case number(Double, NumberForm)
    /// Not a number: the value as shown in an error (text trimmed and cut to 40 characters).
    case notNumber(String)
    /// A number beyond float32's range (or a numeral beyond double's): the value as shown in an error.
    case outOfRange(String)
}

/// How a number was stored: what the column's detected kind is made of.
enum NumberForm: Equatable {
    case integer, real, text, boolean
}

/// How values are read as numbers, shared by every data source.
public enum ColumnValues {
    /// Reads a feature value: INTEGER and REAL as they are; TEXT holding a decimal numeral (optional sign,
    /// digits with an optional decimal point, optional exponent; surrounding whitespace ignored) as that
    /// number; TEXT true/false, yes/no, t/f (any case) as 1/0; empty text as missing.
    static func feature(_ value: DatabaseCell) -> NumericCell {
        switch value {
        case .null: return .missing
        case .integer(let v): return .number(Double(v), .integer)
        case .real(let v): return checked(v, form: .real, shown: { "\(v)" })
        case .text(let s):
            let text = trimmed(s)
            if text.isEmpty { return .missing }
            if let v = numeral(text) { return checked(v, form: .text, shown: { shown(text) }) }
            if let b = booleanWord(text) { return .number(b ? 1 : 0, .boolean) }
            return .notNumber(shown(text))
        case .blob(let count): return .notNumber("<blob of \(count) bytes>")
        }
    }

    private static func checked(_ v: Double, form: NumberForm, shown: () -> String) -> NumericCell {
        guard v.isFinite else { return v.isNaN ? .notNumber(shown()) : .outOfRange(shown()) }
        guard abs(v) <= Double(Float.greatestFiniteMagnitude) else { return .outOfRange(shown()) }
        return .number(v, form)
    }

    public static func trimmed(_ s: String) -> String {
        s.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public static func shown(_ s: String) -> String {
        s.count > 40 ? String(s.prefix(40)) + "…" : s
    }

    /// The value of a decimal numeral (`12`, `-0.2`, `+4`, `.5`, `3.`, `1e3`, `2.5E-4`), nil for anything else
    /// (hexadecimal, `nan`, `inf`, thousands separators, units, …). May be infinite when the exponent is huge.
    public static func numeral(_ text: String) -> Double? {
        var digits = 0
        var i = text.utf8.startIndex
        let bytes = text.utf8
        func at(_ i: String.UTF8View.Index) -> UInt8? { i < bytes.endIndex ? bytes[i] : nil }
        if let c = at(i), c == UInt8(ascii: "+") || c == UInt8(ascii: "-") { i = bytes.index(after: i) }
        while let c = at(i), c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") { digits += 1; i = bytes.index(after: i) }
        if at(i) == UInt8(ascii: ".") {
            i = bytes.index(after: i)
            while let c = at(i), c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") { digits += 1; i = bytes.index(after: i) }
        }
        guard digits > 0 else { return nil }
        if let c = at(i), c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
            i = bytes.index(after: i)
            if let c = at(i), c == UInt8(ascii: "+") || c == UInt8(ascii: "-") { i = bytes.index(after: i) }
            var exponentDigits = 0
            while let c = at(i), c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") { exponentDigits += 1; i = bytes.index(after: i) }
            guard exponentDigits > 0 else { return nil }
        }
        guard i == bytes.endIndex else { return nil }
        return Double(text)
    }

    /// true/t/yes → true, false/f/no → false (any case); nil for anything else.
    public static func booleanWord(_ text: String) -> Bool? {
        guard text.utf8.count <= 5 else { return nil }
        switch text.lowercased() {
        case "true", "t", "yes": return true
        case "false", "f", "no": return false
        default: return nil
        }
    }

    /// Why a feature column looks like a row identifier rather than a measurement, or nil.
    /// By name: `id`, `*_id`, `*Id`/`*ID` (camel case), `index`, `rowid`, `row_id`, `Unnamed: 0` (what pandas
    /// writes for its index). By values, over at least `minimumRows` rows with no value missing: distinct
    /// integers that are consecutive (k, k+1, …, in any order), or — when `rowOrderIsInsertionOrder` (a
    /// table read in rowid order, not a query's own order) — distinct integers that increase with every row
    /// (an agent's share of a numbering, a sequence number).
    public static func identifierReason(name: String, values: [Double], rowOrderIsInsertionOrder: Bool, minimumRows: Int = 10) -> String? {
        let lower = name.lowercased()
        if lower == "id" || lower == "index" || lower == "rowid" || lower == "row_id" || lower == "oid" || lower == "_rowid_"
            || lower.hasSuffix("_id") || lower.hasSuffix(" id") || lower.hasSuffix("-id") || lower.hasPrefix("unnamed:") {
            return "its name is an identifier's"
        }
        if name.count > 2, name.hasSuffix("Id") || name.hasSuffix("ID"),
           let before = name.dropLast(2).last, before.isLowercase {
            return "its name is an identifier's"
        }
        guard values.count >= minimumRows, values.allSatisfy({ $0.isFinite && $0 == $0.rounded() }) else { return nil }
        let sorted = values.sorted()
        if zip(sorted, sorted.dropFirst()).allSatisfy({ $1 - $0 == 1 }) {
            return "its \(values.count) values are the distinct integers \(Int64(sorted[0]))…\(Int64(sorted[sorted.count - 1])), one per row"
        }
        if rowOrderIsInsertionOrder, zip(values, values.dropFirst()).allSatisfy({ $0 < $1 }) {
            return "its \(values.count) values are distinct integers that increase with every row (\(Int64(values[0])), \(Int64(values[1])), \(Int64(values[2])), …), like a sequence number"
        }
        return nil
    }
}
