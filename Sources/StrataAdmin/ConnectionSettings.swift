import Foundation

/// Where the admin API is and which certificate to present. Each field comes from the first of: a flag,
/// an environment variable (STRATACTL_*), the config file (JSON), the default.
public struct ConnectionSettings: Sendable, Hashable, Codable {
    public var host: String = "127.0.0.1"
    public var port: Int = 7301
    public var cert: String?
    public var key: String?
    public var ca: String?
    /// The name checked against the coordinator certificate's SAN.
    public var serverName: String = "localhost"

    public init() {}

    /// The config file's shape: every field optional.
    public struct File: Codable, Sendable, Hashable {
        /// HOST:PORT of the admin API.
        public var coordinator: String?
        public var cert: String?
        public var key: String?
        public var ca: String?
        public var serverName: String?
        public init() {}
    }

    /// What the command line gave (nil = not given).
    public struct Flags: Sendable, Hashable {
        public var coordinator: String?
        public var cert: String?
        public var key: String?
        public var ca: String?
        public var serverName: String?
        public var config: String?
        public init(coordinator: String? = nil, cert: String? = nil, key: String? = nil, ca: String? = nil, serverName: String? = nil, config: String? = nil) {
            self.coordinator = coordinator
            self.cert = cert
            self.key = key
            self.ca = ca
            self.serverName = serverName
            self.config = config
        }
    }

    static let environment = ["--coordinator": "STRATACTL_COORDINATOR", "--cert": "STRATACTL_CERT", "--key": "STRATACTL_KEY",
                              "--ca": "STRATACTL_CA", "--server-name": "STRATACTL_SERVER_NAME", "--config": "STRATACTL_CONFIG"]

    public static func environmentName(_ flag: String) -> String { environment[flag] ?? "" }

    /// The default config file: $XDG_CONFIG_HOME/strata/stratactl.json, or ~/.config/strata/stratactl.json.
    public static func defaultConfigPath(environment: [String: String]) -> String? {
        if let xdg = environment["XDG_CONFIG_HOME"], !xdg.isEmpty { return xdg + "/strata/stratactl.json" }
        if let home = environment["HOME"], !home.isEmpty { return home + "/.config/strata/stratactl.json" }
        return nil
    }

    /// Resolves flags > environment > config file > defaults. A config file named by a flag or STRATACTL_CONFIG
    /// must exist; the default one is read only if present. Relative certificate paths in a config file are
    /// relative to the file's directory.
    public static func resolve(flags: Flags, environment: [String: String]) throws -> ConnectionSettings {
        func env(_ flag: String) -> String? { environment[environmentName(flag)].flatMap { $0.isEmpty ? nil : $0 } }
        var file = File()
        var fileDirectory = ""
        let explicitConfig = flags.config ?? env("--config")
        if let path = explicitConfig ?? defaultConfigPath(environment: environment),
           explicitConfig != nil || FileManager.default.fileExists(atPath: path) {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw AdminClientError(.configuration, "cannot read the config file \(path)")
            }
            do {
                file = try JSONDecoder().decode(File.self, from: data)
            } catch {
                throw AdminClientError(.configuration, "the config file \(path) is not valid: \(error). Expected JSON like {\"coordinator\": \"127.0.0.1:7301\", \"cert\": \"admin.crt\", \"key\": \"admin.key\", \"ca\": \"ca.crt\"}")
            }
            fileDirectory = (path as NSString).deletingLastPathComponent
        }
        func fromFile(_ value: String?) -> String? {
            guard let value else { return nil }
            return value.hasPrefix("/") || fileDirectory.isEmpty ? value : fileDirectory + "/" + value
        }
        var settings = ConnectionSettings()
        if let address = flags.coordinator ?? env("--coordinator") ?? file.coordinator {
            (settings.host, settings.port) = try parseAddress(address)
        }
        settings.cert = flags.cert ?? env("--cert") ?? fromFile(file.cert)
        settings.key = flags.key ?? env("--key") ?? fromFile(file.key)
        settings.ca = flags.ca ?? env("--ca") ?? fromFile(file.ca)
        settings.serverName = flags.serverName ?? env("--server-name") ?? file.serverName ?? settings.serverName
        return settings
    }

    /// HOST:PORT, [IPv6]:PORT, or HOST (port 7301).
    public static func parseAddress(_ text: String) throws -> (String, Int) {
        var host = text
        var port = 7301
        if text.hasPrefix("["), let close = text.firstIndex(of: "]") {
            host = String(text[text.index(after: text.startIndex)..<close])
            let rest = text[text.index(after: close)...]
            if rest.hasPrefix(":") {
                guard let p = Int(rest.dropFirst()) else { throw AdminClientError(.configuration, "bad port in '\(text)'") }
                port = p
            }
        } else if let colon = text.lastIndex(of: ":") {
            host = String(text[..<colon])
            guard let p = Int(text[text.index(after: colon)...]) else { throw AdminClientError(.configuration, "bad port in '\(text)': use HOST:PORT") }
            port = p
        }
        guard !host.isEmpty, (1...65535).contains(port) else {
            throw AdminClientError(.configuration, "'\(text)' is not HOST:PORT with a port between 1 and 65535")
        }
        return (host, port)
    }
}
