import Foundation
import Testing

/// `--version` of every installed program: Strata's version, the commit, and the libraries it runs with (the
/// shared libraries' own answers, compared with what the system's tools report).
extension IntegrationSuite {
    @Suite struct VersionTests {
        @Test func everyProgramSaysItsVersionCommitAndLibraries() throws {
            let box = Sandbox("version")
            let openssl = try box.run("/usr/bin/env", ["openssl", "version"]).output
            for (program, libraries) in [("strata-coordinator", ["OpenSSL", "SQLite"]), ("strata-agent", ["OpenSSL", "SQLite"]),
                                         ("stratactl", ["OpenSSL"]), ("strata-datagen", ["SQLite"])] {
                let result = try box.run(Binaries.path(program), ["--version"], timeout: 30)
                #expect(result.status == 0, "\(program): \(result.output)")
                let lines = result.output.split(separator: "\n").map(String.init)
                #expect(lines.first?.hasPrefix("\(program) 0.") == true && lines.first?.contains("commit") == true, "\(program): \(result.output)")
                for library in libraries {
                    let line = lines.first { $0.trimmingCharacters(in: .whitespaces).hasPrefix(library + " ") }
                    #expect(line != nil, "\(program) names no \(library) version: \(result.output)")
                    if library == "OpenSSL", let line {
                        // `OpenSSL 3.0.17 1 Jul 2025` from the library; the CLI prints the same words first.
                        let words = line.trimmingCharacters(in: .whitespaces).split(separator: " ").prefix(2).joined(separator: " ")
                        #expect(openssl.contains(words), "\(program) reports \(line); openssl version: \(openssl)")
                    }
                    if library == "SQLite", let line {
                        #expect(line.contains(" 3."), "\(program): \(line)")
                    }
                }
            }
        }
    }
}
