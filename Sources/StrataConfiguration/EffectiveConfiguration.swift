import Foundation

/// `--print-config`: every option and flag of a parsed command, with its value and where it came from
/// (command line, settings file and line, or default). Read from the parsed command itself, so a new flag
/// appears without being listed anywhere.
public enum EffectiveConfiguration {
    public struct Entry: Sendable, Equatable {
        public var name: String
        public var value: String
        public var source: String
    }

    /// The entries of `command` (a parsed ArgumentParser command), option groups flattened, in declaration order.
    public static func entries(of command: Any, sources: [String: CommandLineSources.Source], hidden: Set<String> = []) -> [Entry] {
        var entries: [Entry] = []
        walk(command, sources: sources, hidden: hidden, into: &entries)
        return entries
    }

    /// `name = value   # source` lines: the format of `ConfigurationFile`, so the output is a settings file. A
    /// setting without a value (an unset option, an empty list) is a comment line.
    public static func render(_ entries: [Entry]) -> String {
        let width = entries.map { $0.name.count + 5 + $0.value.count }.max() ?? 0
        return entries.map { entry in
            let setting = entry.value == unset ? "# \(entry.name) =" : "\(entry.name) = \(entry.value)"
            return setting.padding(toLength: max(width, setting.count), withPad: " ", startingAt: 0) + "   # \(entry.source)"
        }.joined(separator: "\n")
    }

    /// The value shown for an option that has none.
    public static let unset = "(none)"

    private static func walk(_ value: Any, sources: [String: CommandLineSources.Source], hidden: Set<String>, into entries: inout [Entry]) {
        for child in Mirror(reflecting: value).children {
            guard let label = child.label, label.hasPrefix("_") else { continue }
            let wrapper = String(describing: type(of: child.value))
            guard let parsed = Mirror(reflecting: child.value).children.first(where: { $0.label == "_parsedValue" })?.value,
                  let inner = Mirror(reflecting: parsed).children.first?.value else { continue }
            if wrapper.hasPrefix("OptionGroup<") {
                walk(inner, sources: sources, hidden: hidden, into: &entries)
                continue
            }
            guard wrapper.hasPrefix("Option<") || wrapper.hasPrefix("Flag<") else { continue }
            let name = flagName(String(label.dropFirst()))
            guard !hidden.contains(name) else { continue }
            entries.append(Entry(name: name, value: render(inner), source: sources[name]?.description ?? "default"))
        }
    }

    /// `maxFrameBytes` → `max-frame-bytes`, as ArgumentParser derives a `.long` name.
    static func flagName(_ property: String) -> String {
        var name = ""
        for character in property {
            if character.isUppercase {
                if !name.isEmpty { name.append("-") }
                name.append(contentsOf: character.lowercased())
            } else {
                name.append(character)
            }
        }
        return name
    }

    private static func render(_ value: Any) -> String {
        let mirror = Mirror(reflecting: value)
        if mirror.displayStyle == .optional {
            guard let wrapped = mirror.children.first?.value else { return unset }
            return render(wrapped)
        }
        if mirror.displayStyle == .collection {
            let items = mirror.children.map { render($0.value) }
            return items.isEmpty ? unset : items.joined(separator: ",")
        }
        if let raw = value as? any RawRepresentable { return "\(raw.rawValue)" }
        let text = "\(value)"
        return text.contains(" ") || text.contains("#") || text.isEmpty ? "\"\(text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\""))\"" : text
    }
}
