import Foundation
import GRDB

/// One SQLite value read as a number, the way docs/PROTOCOL.md §8 describes.
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

enum ColumnValues {
    /// Reads a feature value: INTEGER and REAL as they are; TEXT holding a decimal numeral (optional sign,
    /// digits with an optional decimal point, optional exponent; surrounding whitespace ignored) as that
    /// number; TEXT true/false, yes/no, t/f (any case) as 1/0; empty text as missing.
    static func feature(_ value: DatabaseValue) -> NumericCell {
        switch value.storage {
        case .null: return .missing
        case .int64(let v): return .number(Double(v), .integer)
        case .double(let v): return checked(v, form: .real, shown: { "\(v)" })
        case .string(let s):
            let text = trimmed(s)
            if text.isEmpty { return .missing }
            if let v = numeral(text) { return checked(v, form: .text, shown: { shown(text) }) }
            if let b = booleanWord(text) { return .number(b ? 1 : 0, .boolean) }
            return .notNumber(shown(text))
        case .blob(let b): return .notNumber("<blob of \(b.count) bytes>")
        }
    }

    private static func checked(_ v: Double, form: NumberForm, shown: () -> String) -> NumericCell {
        guard v.isFinite else { return v.isNaN ? .notNumber(shown()) : .outOfRange(shown()) }
        guard abs(v) <= Double(Float.greatestFiniteMagnitude) else { return .outOfRange(shown()) }
        return .number(v, form)
    }

    static func trimmed(_ s: String) -> String {
        s.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func shown(_ s: String) -> String {
        s.count > 40 ? String(s.prefix(40)) + "…" : s
    }

    /// The value of a decimal numeral (`12`, `-0.2`, `+4`, `.5`, `3.`, `1e3`, `2.5E-4`), nil for anything else
    /// (hexadecimal, `nan`, `inf`, thousands separators, units, …). May be infinite when the exponent is huge.
    static func numeral(_ text: String) -> Double? {
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
    static func booleanWord(_ text: String) -> Bool? {
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
    static func identifierReason(name: String, values: [Double], rowOrderIsInsertionOrder: Bool, minimumRows: Int = 10) -> String? {
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
