import ArgumentParser
import Testing
@testable import StrataConfiguration

@Suite struct ConfigurationFileTests {
    @Test func settingsCommentsQuotesAndFlags() throws {
        let file = try ConfigurationFile(parsing: """
            # the clinics' federation
            features = 60   # sixty columns
            --model = mlp
            hidden=32,32
            trainer-command = "python3 train.py --tag \\"a # b\\""
            no-admin = true
            no-metrics = false

            \tlabel-column = outcome\r
            """)
        #expect(file.settings.map(\.name) == ["features", "model", "hidden", "trainer-command", "no-admin", "no-metrics", "label-column"])
        #expect(file.settings.map(\.line) == [2, 3, 4, 5, 6, 7, 9])
        #expect(file.arguments == ["--features", "60", "--model", "mlp", "--hidden", "32,32",
                                   "--trainer-command", "python3 train.py --tag \"a # b\"", "--no-admin", "--label-column", "outcome"])
    }

    @Test func mistakesNameTheirLine() {
        #expect(throws: ConfigurationFile.ParseError.notASetting(line: 2, text: "features 60")) { try ConfigurationFile(parsing: "model = mlp\nfeatures 60") }
        #expect(throws: ConfigurationFile.ParseError.badName(line: 1, name: "max frame")) { try ConfigurationFile(parsing: "max frame = 3") }
        #expect(throws: ConfigurationFile.ParseError.unterminatedQuote(line: 1)) { try ConfigurationFile(parsing: "trainer-command = \"python3") }
        #expect(throws: ConfigurationFile.ParseError.repeated(name: "features", lines: [1, 3])) {
            try ConfigurationFile(parsing: "features = 1\nclasses = 2\nfeatures = 3")
        }
        #expect(throws: ConfigurationFile.ParseError.self) { try ConfigurationFile(parsing: "a = \"x\" y") }
    }

    @Test func theCommandLineWinsAndSourcesAreKept() throws {
        let text = "features = 60\nhidden = 32,32\nno-admin = true\n"
        let sources = try CommandLineSources(commandLine: ["--hidden", "16", "--config", "c.conf", "--classes=3"], read: { path in
            #expect(path == "c.conf")
            return text
        })
        // The file's hidden is left out (a list is replaced, not appended to); the file comes first.
        #expect(sources.arguments == ["--features", "60", "--no-admin", "--hidden", "16", "--classes=3"])
        #expect(sources.sources["hidden"] == .commandLine && sources.sources["classes"] == .commandLine)
        #expect(sources.sources["features"] == .file(path: "c.conf", line: 1) && sources.sources["no-admin"] == .file(path: "c.conf", line: 3))
        #expect(sources.sources["model"] == nil)
        #expect(throws: CommandLineSources.Failure.self) { try CommandLineSources(commandLine: ["--config"]) }
        #expect(throws: CommandLineSources.Failure.self) { try CommandLineSources(commandLine: ["--config", "x"], read: { _ in "features 60" }) }
    }

    struct Group: ParsableArguments {
        @Option var maxFrameBytes: Int = 64
        @Flag var noAdmin = false
    }
    enum Mode: String, ExpressibleByArgument { case strata, fedavg }
    struct Command: ParsableCommand {
        @Option var features: Int = 60
        @Option var name: String?
        @Option var mode: Mode = .strata
        @Option(parsing: .upToNextOption) var columns: [String] = []
        @Option var command: String = "python3 a.py"
        @OptionGroup var group: Group
    }

    @Test func printConfigShowsEveryFlagWithItsValueAndSource() throws {
        let sources = try CommandLineSources(commandLine: ["--config", "c.conf", "--mode", "fedavg"],
                                             read: { _ in "max-frame-bytes = 128\ncolumns = a\n" })
        let command = try Command.parse(sources.arguments)
        let entries = EffectiveConfiguration.entries(of: command, sources: sources.sources)
        #expect(entries.map(\.name) == ["features", "name", "mode", "columns", "command", "max-frame-bytes", "no-admin"])
        #expect(entries.map(\.value) == ["60", "(none)", "fedavg", "a", "\"python3 a.py\"", "128", "false"])
        #expect(entries.map(\.source) == ["default", "default", "command line", "c.conf:2", "default", "c.conf:1", "default"])
        // The output is itself a settings file that gives the same command.
        let rendered = EffectiveConfiguration.render(entries)
        let again = try Command.parse(ConfigurationFile(parsing: rendered).arguments)
        #expect(again.features == 60 && again.mode == .fedavg && again.columns == ["a"] && again.group.maxFrameBytes == 128
                && again.command == "python3 a.py" && again.name == nil)
    }
}
