import Foundation
import GRDB

// The parts of one update cycle that no implementation of this design can skip, each measured alone in
// the bench process (besides the AEAD and TCP limits in NetBenchSupport): reading the delta once to
// validate it and folding it into the buffer (memory passes), and making the buffer's commit durable
// (SQLite, configured as the coordinator's store).

/// One read pass over an update's floats (the least a validation can do: look at every value) and one
/// axpy of them into an accumulator of the same size (the fold), plain SIMD loops, best of many passes.
struct MemoryPassLimit {
    let readSeconds: Double
    let axpySeconds: Double

    static func measure(parameters n: Int, passes: Int = 40) -> MemoryPassLimit {
        var g = SystemRandomNumberGenerator()
        let x = (0..<n).map { _ in Float.random(in: -1...1, using: &g) }
        var y = [Float](repeating: 0, count: n)
        var sink: Float = 0
        func readPass() {
            x.withUnsafeBytes { raw in
                var a = SIMD16<Float>(), b = SIMD16<Float>()
                var i = 0
                while i + 32 <= n {
                    let u = raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self)
                    let v = raw.loadUnaligned(fromByteOffset: 4 * (i + 16), as: SIMD16<Float>.self)
                    a += u * u
                    b += v * v
                    i += 32
                }
                sink += (a + b).sum()
            }
        }
        func axpy() {
            y.withUnsafeMutableBufferPointer { yb in
                x.withUnsafeBufferPointer { xb in
                    let yp = yb.baseAddress!, xp = xb.baseAddress!
                    for i in 0..<n { yp[i] += 0.5 * xp[i] }
                }
            }
        }
        readPass(); axpy()
        var bestRead = Double.infinity, bestAxpy = Double.infinity
        for _ in 0..<passes {
            var t = threadCPUSeconds()
            readPass()
            bestRead = min(bestRead, threadCPUSeconds() - t)
            t = threadCPUSeconds()
            axpy()
            bestAxpy = min(bestAxpy, threadCPUSeconds() - t)
        }
        if sink.isNaN { progress("(read pass saw a NaN)") }
        return MemoryPassLimit(readSeconds: bestRead, axpySeconds: bestAxpy)
    }
}

/// SQLite's CPU for the durable writes of `k` updates: k one-row transactions (a task record each) and one
/// transaction with a model blob of `blobBytes` and k rows (the commit). WAL, synchronous = FULL and the page
/// size the coordinator's store picks for this model size; checkpoints run as they come (every 1000 pages).
/// Process CPU time (user + system: the writes into the page cache, fsync), best of `repetitions`.
struct SQLiteCommitLimit {
    let secondsPerUpdate: Double
    let pageSize: Int

    static func measure(blobBytes: Int, k: Int, pageSize: Int, commits: Int = 20, repetitions: Int = 3) throws -> SQLiteCommitLimit {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("strata-bench-sqlite-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let blob = Data((0..<blobBytes).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) })
        var best = Double.infinity
        for repetition in 0..<repetitions {
            var configuration = Configuration()
            configuration.prepareDatabase { db in
                try db.execute(sql: "PRAGMA page_size = \(pageSize)")
                try db.execute(sql: "PRAGMA synchronous = FULL")
                try db.execute(sql: "PRAGMA secure_delete = FAST")
            }
            let pool = try DatabasePool(path: dir.appendingPathComponent("floor-\(repetition).sqlite").path, configuration: configuration)
            try pool.write { db in
                try db.execute(sql: "CREATE TABLE tasks (id INTEGER PRIMARY KEY, clientID TEXT NOT NULL, baseVersion INTEGER NOT NULL, dispatchedAt REAL NOT NULL)")
                try db.execute(sql: "CREATE INDEX tasks_client ON tasks(clientID)")
                try db.execute(sql: "CREATE TABLE models (version INTEGER PRIMARY KEY, parameters BLOB NOT NULL)")
                try db.execute(sql: "CREATE TABLE committed (taskID INTEGER PRIMARY KEY, version INTEGER NOT NULL, weight REAL NOT NULL)")
            }
            var task: Int64 = 0
            let start = processCPUSeconds()
            for version in 1...commits {
                var ids: [Int64] = []
                for client in 0..<k {
                    task += 1
                    ids.append(task)
                    try pool.write { db in
                        try db.execute(sql: "INSERT INTO tasks VALUES (?, ?, ?, ?)", arguments: [task, "sim-\(client)", version, Double(task)])
                    }
                }
                try pool.write { db in
                    try db.execute(sql: "INSERT INTO models VALUES (?, ?)", arguments: [version, blob])
                    for id in ids { try db.execute(sql: "INSERT INTO committed VALUES (?, ?, ?)", arguments: [id, version, 1.0]) }
                }
            }
            best = min(best, (processCPUSeconds() - start) / Double(commits * k))
            try pool.close()
        }
        return SQLiteCommitLimit(secondsPerUpdate: best, pageSize: pageSize)
    }
}
