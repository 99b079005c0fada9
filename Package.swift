// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Strata",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "strata-coordinator", targets: ["strata-coordinator"]),
        .executable(name: "strata-agent", targets: ["strata-agent"]),
        .executable(name: "strata-datagen", targets: ["strata-datagen"]),
        .executable(name: "strata-bench", targets: ["strata-bench"]),
        .executable(name: "stratactl", targets: ["stratactl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
    ],
    targets: [
        // System OpenSSL 3 (libssl, libcrypto) and a C shim for its function-like macros.
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(name: "CStrataOpenSSLShim", dependencies: ["COpenSSL"]),
        // The system unixODBC driver manager: the agent's path to PostgreSQL, MariaDB/MySQL, SQL Server, Db2, Oracle.
        .systemLibrary(
            name: "CODBC",
            pkgConfig: "odbc",
            providers: [.apt(["unixodbc-dev"])]
        ),

        // Pure logic: no I/O.
        // The commit a release was built from (Deploy/install.sh passes it as a C macro).
        .target(name: "CStrataBuildInfo"),
        .target(name: "StrataCore", dependencies: ["CStrataBuildInfo"]),
        .target(name: "StrataWire", dependencies: [
            "StrataCore",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),

        // An agent's rows: the rules every data source shares (columns, kinds, labels, splits, NULLs, typed
        // errors) and the `DataSource` seam. Pure: the sources below do the reading.
        .target(name: "StrataData", dependencies: ["StrataCore"]),

        // I/O edges: only StrataTransport touches OpenSSL, only StrataStore touches SQLite, only StrataODBC
        // touches ODBC.
        .target(name: "StrataTransport", dependencies: [
            "COpenSSL", "CStrataOpenSSLShim",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOTLS", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
        ]),
        .target(name: "StrataStore", dependencies: [
            "StrataCore", "StrataData",
            .product(name: "GRDB", package: "GRDB.swift"),
        ]),
        .target(name: "StrataODBC", dependencies: ["CODBC", "StrataData"]),

        // Settings files (--config), merged under the command line; --print-config.
        .target(name: "StrataConfiguration", dependencies: [.product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .target(name: "StrataLog", dependencies: [
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Services.
        .target(name: "StrataCoordinator", dependencies: [
            "StrataCore", "StrataWire", "StrataTransport", "StrataStore",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
        ]),
        // The operator's side of the admin API: an mTLS HTTP client, tables, model export.
        .target(name: "StrataAdmin", dependencies: [
            "StrataCore", "StrataWire", "StrataTransport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        .target(name: "StrataAgent", dependencies: [
            "StrataCore", "StrataData", "StrataWire", "StrataTransport", "StrataStore",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),

        // Executables: argument parsing and wiring only.
        .executableTarget(name: "strata-coordinator", dependencies: [
            "StrataLog", "StrataStore", "StrataTransport", "StrataCore", "StrataConfiguration", "StrataWire",
            "StrataCoordinator",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "strata-agent", dependencies: [
            "StrataLog", "StrataConfiguration",
            "StrataAgent", "StrataData", "StrataStore", "StrataODBC",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "stratactl", dependencies: [
            "StrataAdmin", "StrataWire", "StrataCore", "StrataTransport",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .executableTarget(name: "strata-datagen", dependencies: [
            "StrataCore", "StrataData", "StrataStore",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        // Benchmarks against limits measured in the same run (docs/PERFORMANCE.md).
        .executableTarget(name: "strata-bench", dependencies: [
            "StrataCore", "StrataWire", "StrataTransport", "StrataCoordinator", "StrataAgent", "StrataStore",
            "StrataData", "StrataODBC",
            "StrataTestServers",  // `strata-bench data` starts PostgreSQL and MariaDB as the ODBC tests do
            "COpenSSL", "CStrataOpenSSLShim",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "GRDB", package: "GRDB.swift"),
        ]),

        // Fuzzing (docs/SECURITY.md#fuzzing): the targets as a library the tests replay the corpus through;
        // `strata-fuzz` replays files, or is libFuzzer's driver when Deploy/fuzz.sh builds it.
        .target(name: "StrataFuzzTargets", dependencies: [
            "StrataCore", "StrataWire", "StrataCoordinator", "StrataStore", "StrataTransport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "strata-fuzz", dependencies: ["StrataFuzzTargets"]),

        .testTarget(name: "StrataCoreTests", dependencies: ["StrataCore"]),
        .testTarget(name: "StrataDataTests", dependencies: ["StrataData"]),
        .testTarget(name: "StrataConfigurationTests", dependencies: [
            "StrataConfiguration", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "StrataWireTests", dependencies: ["StrataWire", .product(name: "NIOEmbedded", package: "swift-nio")]),
        .testTarget(name: "StrataTransportTests", dependencies: [
            "StrataTransport", "StrataWire",
            "COpenSSL",  // crafts certificates the openssl CLI cannot (a NUL byte inside a CN)
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
            .product(name: "NIOTLS", package: "swift-nio"),
        ]),
        .testTarget(name: "StrataAgentTests", dependencies: [
            "StrataAgent", "StrataData", "StrataStore", "StrataCore", .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "StrataAdminTests", dependencies: ["StrataAdmin", "StrataWire"]),
        .testTarget(name: "StrataCoordinatorTests", dependencies: [
            "StrataCoordinator", "StrataCore", "StrataStore", "StrataTransport", "StrataWire",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .testTarget(name: "StrataFuzzTests", dependencies: [
            "StrataFuzzTargets", "StrataCore", "StrataWire", .product(name: "NIOCore", package: "swift-nio"),
        ]),
        .testTarget(name: "StrataStoreTests", dependencies: ["StrataStore", "StrataData", .product(name: "GRDB", package: "GRDB.swift")]),
        // Real PostgreSQL and MariaDB servers for the tests (Tests/StrataTestServers/README in its header).
        .target(name: "StrataTestServers", dependencies: [.product(name: "GRDB", package: "GRDB.swift")], path: "Tests/StrataTestServers"),
        .testTarget(name: "StrataODBCTests", dependencies: [
            "StrataODBC", "StrataData", "StrataStore", "StrataCore", "StrataTestServers", "CODBC",
            .product(name: "GRDB", package: "GRDB.swift"),
        ]),
        .testTarget(name: "StrataIntegrationTests", dependencies: [
            "StrataCore", "StrataWire", "StrataTransport", "StrataTestServers",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "GRDB", package: "GRDB.swift"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
