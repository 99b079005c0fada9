import Foundation

/// The fuzz targets by name, as `strata-fuzz`, Deploy/fuzz.sh and the tests call them.
public enum FuzzTarget: String, CaseIterable, Sendable {
    case decode
    case coordinator
}

/// Runs saved inputs (a corpus, crash reproducers) through a target without libFuzzer.
public final class Replayer: @unchecked Sendable {
    public let target: FuzzTarget
    private lazy var coordinator = CoordinatorTarget()

    public init(target: FuzzTarget) { self.target = target }

    /// Every regular file under `paths` (a directory stands for the files in it), sorted.
    public static func inputFiles(_ paths: [String]) -> [String] {
        var files: [String] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { continue }
            if isDirectory.boolValue {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
                files += names.filter { !$0.hasPrefix(".") }.map { path + "/" + $0 }
            } else {
                files.append(path)
            }
        }
        return files.sorted()
    }

    public func run(_ data: [UInt8]) async throws {
        switch target {
        case .decode: try DecodeTarget.run(data)
        case .coordinator: try await coordinator.run(data)
        }
    }

    /// For libFuzzer's synchronous callback.
    public func runBlocking(_ data: [UInt8]) throws(FuzzFailure) {
        switch target {
        case .decode: try DecodeTarget.run(data)
        case .coordinator: try coordinator.runBlocking(data)
        }
    }
}
