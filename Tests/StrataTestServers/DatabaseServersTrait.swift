import Testing

/// `@Suite(.databaseServers)`: starts PostgreSQL and MariaDB once for the suite (`DatabaseServers.current` in
/// its tests), stops them when the suite ends, whether its tests pass or fail. When they cannot be started,
/// every test of the suite fails with the reason (never a silent skip).
public struct DatabaseServersTrait: SuiteTrait, TestScoping {
    public var isRecursive: Bool { false }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        let servers = try DatabaseServers.start()
        defer { servers.stop() }
        try await DatabaseServers.$current.withValue(servers) {
            try await function()
        }
    }
}

extension Trait where Self == DatabaseServersTrait {
    public static var databaseServers: Self { DatabaseServersTrait() }
}

extension DatabaseServers {
    /// The servers of the running suite; fails the test when the suite has no `.databaseServers` trait.
    public static func required() throws -> DatabaseServers {
        guard let current else { throw DatabaseServerError("no database servers: give the suite the .databaseServers trait") }
        return current
    }
}
