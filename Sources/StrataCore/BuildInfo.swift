import CStrataBuildInfo

/// What `--version` prints: Strata's version, the commit it was built from and the libraries it runs with.
public enum BuildInfo {
    /// The release version; agents send it in their hello (`strata-agent/VERSION`).
    public static let version = "0.3.0"

    /// The git commit (`Deploy/install.sh` records it; "unknown" for a plain `swift build`).
    public static var commit: String { String(cString: strata_build_commit()) }

    /// `strata-agent 0.3.0 (commit 1a2b3c4d5e6f)`, then one line per library: name and the version it runs with.
    public static func describe(program: String, libraries: [(name: String, version: String)]) -> String {
        let commit = self.commit
        let shortCommit = commit == "unknown" ? "commit unknown: built without Deploy/install.sh" : "commit \(commit.prefix(12))"
        var lines = ["\(program) \(version) (\(shortCommit))"]
        for library in libraries { lines.append("  \(library.name) \(library.version)") }
        return lines.joined(separator: "\n")
    }
}
