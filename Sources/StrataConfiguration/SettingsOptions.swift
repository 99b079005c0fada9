import ArgumentParser

/// `--config FILE` and `--print-config`, for a program whose settings can come from a file. `--config` itself
/// is read before the flags are parsed (`CommandLineSources`, in the program's `main`); it is declared here so
/// that `--help` lists it.
public struct SettingsOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp(
        "Read settings from FILE: one per line, name = value, name being a flag without -- (docs/OPERATIONS.md, \"Configuration files\"); flags given on the command line win.",
        valueName: "file"))
    public var config: String?
    @Flag(name: .long, help: "Print every setting with its value and where it came from (command line, the --config file and line, or default) in the --config format, then exit.")
    public var printConfig = false

    public init() {}

    /// Under `--print-config`, prints the effective settings of `command` (the parsed command) and returns true.
    public func printIfAsked(_ command: any ParsableArguments, program: String) -> Bool {
        guard printConfig else { return false }
        let sources = CommandLineSources.ofThisProcess(program: program).sources
        print(EffectiveConfiguration.render(EffectiveConfiguration.entries(of: command, sources: sources, hidden: ["config", "print-config"])))
        return true
    }
}
