import Foundation

/// The arguments a program runs with: its settings file (`--config FILE`) first, then its command line, which
/// wins: a setting the command line also gives is left out of the file's part (so lists are replaced, not
/// appended to). Also remembers where each flag came from, for `--print-config`.
public struct CommandLineSources: Sendable {
    public enum Source: Sendable, Equatable, CustomStringConvertible {
        case commandLine
        case file(path: String, line: Int)
        public var description: String {
            switch self {
            case .commandLine: "command line"
            case .file(let path, let line): "\(path):\(line)"
            }
        }
    }

    public enum Failure: Error, CustomStringConvertible {
        case missingPath
        case unreadable(path: String, reason: String)
        case invalid(path: String, ParseErrorText: String)
        public var description: String {
            switch self {
            case .missingPath: "--config needs the path of a settings file"
            case .unreadable(let path, let reason): "cannot read the settings file \(path): \(reason)"
            case .invalid(let path, let text): "\(path): \(text)"
            }
        }
    }

    /// What the command parser gets.
    public var arguments: [String]
    /// Flag name (without `--`) → where its value came from; absent: the default.
    public var sources: [String: Source]

    /// `commandLine` without the program name. `read` reads a file (injected for tests).
    public init(commandLine: [String], read: (String) throws -> String = { try String(contentsOfFile: $0, encoding: .utf8) }) throws(Failure) {
        var rest: [String] = []
        var path: String?
        var i = 0
        while i < commandLine.count {
            let argument = commandLine[i]
            if argument == "--config" {
                guard i + 1 < commandLine.count else { throw .missingPath }
                path = commandLine[i + 1]
                i += 2
                continue
            }
            if argument.hasPrefix("--config=") {
                path = String(argument.dropFirst("--config=".count))
                i += 1
                continue
            }
            rest.append(argument)
            i += 1
        }
        var sources: [String: Source] = [:]
        // Flag names on the command line (`--name` or `--name=value`; values are never taken for names).
        let given = Set(rest.filter { $0.hasPrefix("--") && $0.count > 2 }.map { String($0.dropFirst(2).split(separator: "=", maxSplits: 1)[0]) })
        for name in given { sources[name] = .commandLine }
        var fromFile: [String] = []
        if let path {
            let text: String
            do { text = try read(path) } catch { throw .unreadable(path: path, reason: "\(error.localizedDescription)") }
            let file: ConfigurationFile
            do { file = try ConfigurationFile(parsing: text) } catch { throw .invalid(path: path, ParseErrorText: error.description) }
            let kept = file.settings.filter { !given.contains($0.name) }
            for setting in kept where setting.value != "false" { sources[setting.name] = .file(path: path, line: setting.line) }
            fromFile = ConfigurationFile(settings: kept).arguments
        }
        arguments = fromFile + rest
        self.sources = sources
    }
}

extension CommandLineSources {
    /// The process's own sources; a settings file that cannot be used stops the program with exit 64 and the reason.
    public static func ofThisProcess(program: String) -> CommandLineSources {
        do {
            return try CommandLineSources(commandLine: Array(CommandLine.arguments.dropFirst()))
        } catch {
            FileHandle.standardError.write(Data("\(program): \(error)\n".utf8))
            exit(64)
        }
    }
}
