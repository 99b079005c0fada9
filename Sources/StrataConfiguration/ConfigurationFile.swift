/// A program's settings file: one setting per line, `name = value`, where `name` is a flag of the program
/// without its `--` and `value` is what would follow it on the command line (docs/OPERATIONS.md,
/// "Configuration files"):
///
///     # the coordinator of the clinics' federation
///     features = 60
///     model = mlp
///     hidden = 32,32
///     trainer-command = "python3 train.py --fast"
///     no-admin = true
///
/// `#` starts a comment (outside quotes); a value may be quoted with `"` (`\"` and `\\` inside); a flag that
/// takes no value is written `name = true` (`false` leaves it out). Pure: parsed from text, so every rule is
/// unit-tested without files.
public struct ConfigurationFile: Sendable, Equatable {
    public struct Setting: Sendable, Equatable {
        public var name: String
        public var value: String
        /// 1-based line in the file.
        public var line: Int
    }

    public enum ParseError: Error, Equatable, CustomStringConvertible {
        case notASetting(line: Int, text: String)
        case badName(line: Int, name: String)
        case unterminatedQuote(line: Int)
        case repeated(name: String, lines: [Int])

        public var description: String {
            switch self {
            case .notASetting(let line, let text): "line \(line): \"\(text)\" is not a setting; write name = value (a flag without --), e.g. features = 60"
            case .badName(let line, let name): "line \(line): \"\(name)\" is not a flag name (letters, digits and -, without the leading --)"
            case .unterminatedQuote(let line): "line \(line): a quoted value has no closing \""
            case .repeated(let name, let lines): "\(name) is set on lines \(lines.map(String.init).joined(separator: " and ")): set it once (a list is one value: hidden = 32,32)"
            }
        }
    }

    public var settings: [Setting]

    public init(settings: [Setting]) { self.settings = settings }

    public init(parsing text: String) throws(ParseError) {
        var settings: [Setting] = []
        var seen: [String: Int] = [:]
        for (index, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = index + 1
            let content = try Self.strippingComment(Substring(rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine), line: line)
            let trimmed = content.trimmingWhitespace()
            if trimmed.isEmpty { continue }
            guard let equals = trimmed.firstIndex(of: "=") else { throw .notASetting(line: line, text: String(trimmed)) }
            var name = trimmed[..<equals].trimmingWhitespace()
            if name.hasPrefix("--") { name = name.dropFirst(2) }
            guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }), name.first != "-" else {
                throw .badName(line: line, name: String(name))
            }
            let value = try Self.value(trimmed[trimmed.index(after: equals)...].trimmingWhitespace(), line: line)
            if let first = seen[String(name)] { throw .repeated(name: String(name), lines: [first, line]) }
            seen[String(name)] = line
            settings.append(Setting(name: String(name), value: value, line: line))
        }
        self.settings = settings
    }

    /// The command-line arguments the settings stand for, in file order.
    public var arguments: [String] {
        settings.flatMap { setting -> [String] in
            switch setting.value {
            case "true": ["--" + setting.name]
            case "false": []
            default: ["--" + setting.name, setting.value]
            }
        }
    }

    private static func strippingComment(_ text: Substring, line: Int) throws(ParseError) -> Substring {
        var inQuotes = false
        var escaped = false
        for index in text.indices {
            let c = text[index]
            if escaped { escaped = false; continue }
            if c == "\\" && inQuotes { escaped = true; continue }
            if c == "\"" { inQuotes.toggle(); continue }
            if c == "#" && !inQuotes { return text[..<index] }
        }
        if inQuotes { throw .unterminatedQuote(line: line) }
        return text
    }

    private static func value(_ text: Substring, line: Int) throws(ParseError) -> String {
        guard text.first == "\"" else { return String(text) }
        var result = ""
        var escaped = false
        var index = text.index(after: text.startIndex)
        while index < text.endIndex {
            let c = text[index]
            if escaped {
                result.append(c)
                escaped = false
            } else if c == "\\" {
                escaped = true
            } else if c == "\"" {
                // Anything after the closing quote is a mistake, not part of the value.
                guard text[text.index(after: index)...].trimmingWhitespace().isEmpty else { throw .notASetting(line: line, text: String(text)) }
                return result
            } else {
                result.append(c)
            }
            index = text.index(after: index)
        }
        throw .unterminatedQuote(line: line)
    }
}

extension Substring {
    func trimmingWhitespace() -> Substring {
        var s = self
        while let first = s.first, first == " " || first == "\t" { s = s.dropFirst() }
        while let last = s.last, last == " " || last == "\t" { s = s.dropLast() }
        return s
    }
}
