import ArgumentParser
import StrataCore
import StrataStore

@main
struct DatagenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "strata-datagen",
        abstract: "Data for a Strata federation.",
        discussion: """
            Without a subcommand name, `generate` runs: `strata-datagen --out run/data --clients 10` writes synthetic \
            client databases, as it always has (`strata-datagen generate --help` lists its options). \
            `strata-datagen import-csv FILE --table T --database DB.sqlite` imports a data owner's CSV file into a \
            table that `strata-agent --database DB.sqlite --table T` reads.
            """,
        version: BuildInfo.describe(program: "strata-datagen", libraries: [("SQLite", SQLiteLibrary.version)]),
        subcommands: [GenerateCommand.self, ImportCSVCommand.self],
        defaultSubcommand: GenerateCommand.self)
}
