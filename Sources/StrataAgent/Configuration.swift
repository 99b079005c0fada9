import NIOCore
import StrataCore
import StrataData
import StrataStore
import StrataTransport

public struct AgentConfiguration: Sendable {
    public var coordinatorHost: String
    public var coordinatorPort: Int
    /// Name checked against the coordinator certificate's SAN; defaults to the host.
    public var serverName: String?
    public var tls: TLSConfiguration
    /// Where the rows come from: a SQLite file (`SampleDataSource`) or a server database (`ODBCDataSource`).
    public var data: any DataSource
    /// The agent's own SQLite state (pending updates). Keep it across restarts.
    public var statePath: String
    public var reconnect = Backoff()
    /// Give up after this many consecutive failed connection attempts (nil: never).
    public var maxConnectAttempts: Int?
    public var connectTimeout: Duration = .seconds(5)
    /// After hello, the coordinator's first reply (welcome or refusal) must arrive within this time.
    public var welcomeTimeout: Duration = .seconds(15)
    public var maxFrameBytes: Int = 64 * 1024 * 1024
    public var agentVersion = "strata-agent/\(BuildInfo.version)"
    /// Re-read the data this often (nil: once, at start). When the rows changed, the agent ends its session and
    /// reconnects at once, so that the coordinator sees the new row counts.
    public var refreshInterval: Duration?
    /// Experiments and tests: delays training updates to emulate a slower client. Inactive by default.
    public var emulation = SlowdownEmulation()
    /// When the coordinator ends the federation: wait for its next one (a long-running agent, a service), or exit 0.
    public var afterFederation: AfterFederation = .wait
    /// While waiting for the next federation: how often to try the coordinator.
    public var nextFederationPoll: Duration = .seconds(30)
    /// The data owner's trainer process (`--trainer-command`); nil: the built-in trainers.
    public var trainerCommand: String?
    /// Longest wait for any one answer of the trainer process.
    public var trainerTimeout: Duration = .seconds(600)

    public init(coordinatorHost: String, coordinatorPort: Int, tls: TLSConfiguration, data: any DataSource, statePath: String) {
        self.coordinatorHost = coordinatorHost
        self.coordinatorPort = coordinatorPort
        self.tls = tls
        self.data = data
        self.statePath = statePath
    }
}

/// What an agent does when the coordinator ends a federation (goodbye without a retry delay).
public enum AfterFederation: String, Sendable, CaseIterable {
    /// Keep running and join the coordinator's next federation (a new state database, or the same one restarted).
    case wait
    /// Exit 0 (scripts and tests that run one federation).
    case exit
}

/// Exponential backoff with full jitter on the upper half: attempt n waits
/// uniform(0.5, 1.0) · min(cap, initial · multiplier^(n-1)).
public struct Backoff: Sendable, Hashable {
    public var initial: Duration = .milliseconds(200)
    public var multiplier: Double = 2
    public var cap: Duration = .seconds(10)
    public init() {}

    public func delay(attempt: Int, random: Double) -> Duration {
        let raw = min(cap.seconds, initial.seconds * pow(multiplier, Double(max(0, attempt - 1))))
        return .milliseconds(Int64(raw * (0.5 + 0.5 * random) * 1000))
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
