import Foundation
import Testing
@testable import StrataCore

/// Reading `.npz` model files: what Strata writes, and what NumPy writes (run here with python3), back to the
/// same names, shapes and float32 bits; every file that is not a float32 model is refused by name.
@Suite struct NumPyArchiveReadTests {
    static let arrays = [
        NumPyArchive.Array(name: "scale", shape: [], values: [2.5]),
        NumPyArchive.Array(name: "embedding.bias", shape: [3], values: [0, -0.0, .leastNonzeroMagnitude]),
        NumPyArchive.Array(name: "conv.weight", shape: [2, 3, 2], values: (0..<12).map { Float($0) * 0.25 - 1 }),
        NumPyArchive.Array(name: "fc.weight", shape: [4, 2], values: [.greatestFiniteMagnitude, -1, 1e-30, 3, 4, 5, 6, 7]),
        NumPyArchive.Array(name: "empty", shape: [0, 5], values: []),
    ]

    @Test func whatStrataWritesReadsBackBitForBit() throws {
        let read = try NumPyArchive.read(NumPyArchive.npz(Self.arrays))
        #expect(read.map(\.name) == Self.arrays.map(\.name))
        #expect(read.map(\.shape) == Self.arrays.map(\.shape))
        #expect(read.map { $0.values.map(\.bitPattern) } == Self.arrays.map { $0.values.map(\.bitPattern) })
    }

    /// What the plain ZIP format cannot hold is refused before anything is written, never trapped on.
    @Test func anArchiveTheFormatCannotHoldIsRefused() {
        let longName = NumPyArchive.Array(name: String(repeating: "n", count: 65_532), shape: [1], values: [0])
        #expect(throws: NumPyArchive.WriteError.tooLarge("array name of 65536 bytes (at most 65535)")) { try NumPyArchive.npz([longName]) }
        #expect(throws: NumPyArchive.WriteError.self) {
            try NumPyArchive.npz((0...65_535).map { NumPyArchive.Array(name: "a\($0)", shape: [], values: [0]) })
        }
    }

    @Test func aDamagedArchiveIsRefusedNotTrapped() throws {
        var archive = [UInt8](try NumPyArchive.npz(Self.arrays))
        archive[200] ^= 0xFF   // inside the first member's data
        #expect(throws: NumPyArchive.ReadError.self) { try NumPyArchive.read(Data(archive)) }
        #expect(throws: NumPyArchive.ReadError.notAZipArchive) { try NumPyArchive.read(Data("not a zip".utf8)) }
        // Every truncation of a valid archive is an error, never a trap.
        let whole = [UInt8](try NumPyArchive.npz(Array(Self.arrays.prefix(2))))
        for cut in stride(from: 0, to: whole.count, by: 7) {
            #expect(throws: NumPyArchive.ReadError.self) { try NumPyArchive.read(Data(whole[..<cut])) }
        }
    }

    /// numpy.savez (with its zip64 local headers), savez_compressed, float64 and Fortran order.
    @Test func whatNumPyWritesIsReadOrRefusedByName() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("strata-npz-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let script = """
            import numpy as np, sys
            d = sys.argv[1]
            a = dict(scale=np.float32(2.5), bias=np.array([0.5, -1], np.float32),
                     w=np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 8, m=np.eye(3, 2, dtype=np.float32))
            np.savez(d + "/plain.npz", **a)
            np.savez_compressed(d + "/compressed.npz", **a)
            np.savez(d + "/double.npz", w=np.zeros((2, 2)))
            np.savez(d + "/fortran.npz", w=np.asfortranarray(np.ones((2, 3), np.float32)))
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, directory.path]
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "python3 with NumPy is needed (.ci/run installs it)")
        func read(_ name: String) throws -> [NumPyArchive.Array] {
            try NumPyArchive.read(Data(contentsOf: directory.appendingPathComponent(name)))
        }
        let plain = try read("plain.npz")
        #expect(plain.map(\.name) == ["scale", "bias", "w", "m"])
        #expect(plain.map(\.shape) == [[], [2], [2, 3, 4], [3, 2]])
        #expect(plain[2].values == (0..<24).map { Float($0) / 8 })
        #expect(plain[3].values == [1, 0, 0, 1, 0, 0])
        #expect(throws: NumPyArchive.ReadError.compressed(member: "scale.npy")) { try read("compressed.npz") }
        #expect(throws: NumPyArchive.ReadError.unsupportedType(member: "w", descr: "<f8")) { try read("double.npz") }
        #expect(throws: NumPyArchive.ReadError.fortranOrder(member: "w")) { try read("fortran.npz") }
    }
}
