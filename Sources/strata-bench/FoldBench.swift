import ArgumentParser
import StrataCore

/// The aggregation fold `acc += w·Δ` as the coordinator runs it (an update handed to the aggregation rule,
/// which folds it into its lane's `WeightedAccumulator`), against a plain axpy pass over arrays of the same
/// size measured in the same run. Both move the same bytes: read the accumulator, read the delta, write the
/// accumulator (12 bytes per parameter), so the ratio of their GB/s is the ratio of their times.
struct FoldBench: Benchmark {
    static let configuration = CommandConfiguration(
        commandName: "fold",
        abstract: "Aggregation fold vs memory bandwidth (an axpy pass of the same size).",
        discussion: """
            The fold is the coordinator's own path: AggregationRule.accept (default mode strata) folding a \
            validated delta into the lane's WeightedAccumulator. The limit is the faster of two axpy loops \
            written here (a plain scalar loop left to the compiler, and an explicit 16-lane SIMD loop) over \
            arrays of the same size. Bytes counted per pass: 12 per parameter (read acc, read delta, write acc). \
            Timings are the best of --repetitions passes, fold and axpy passes interleaved. For information it \
            also times WeightedAccumulator.add called directly (the kernel without the rule around it).
            """
    )

    @OptionGroup var output: BenchOutputOptions

    @Option(help: "Parameters per delta (Float32). 10M is 40 MB per array; raise it (e.g. 100000000) to measure from DRAM rather than a large L3.")
    var parameters = 10_000_000

    @Option(help: "Timed passes of each kind; the best (fastest) pass counts.")
    var repetitions = 40

    @Option(help: "Aggregation mode whose rule folds the updates: strata or fedbuff (the synchronous rules fold through the same Lane.fold but take one update per client and round; fedasync mixes instead of folding).")
    var mode: String = "strata"

    @Option(help: "Parameters per delta for the robust folds' cost (each keeps a copy of every delta of a buffer of --robust-buffer).")
    var robustParameters = 1_000_000

    @Option(help: "K of the buffer the robust folds' cost is measured on.")
    var robustBuffer = 10

    func validate() throws {
        guard robustParameters >= 1, robustBuffer >= 2 else { throw ValidationError("--robust-parameters must be >= 1 and --robust-buffer >= 2") }
        guard parameters >= 1 else { throw ValidationError("--parameters must be at least 1") }
        guard repetitions >= 1 else { throw ValidationError("--repetitions must be at least 1") }
        guard mode == "strata" || mode == "fedbuff" else { throw ValidationError("--mode must be strata or fedbuff") }
    }

    func measure() async throws -> [BenchResult] {
        let n = parameters
        let mode = AggregationMode(rawValue: mode)!
        progress("fold: \(n) parameters (\(n * 4 / 1_000_000) MB per array), \(repetitions) passes each, mode \(mode.rawValue)")

        // A delta with realistic magnitudes (a model step), drawn once.
        var generator = SeededGenerator(seed: 6)
        var delta = [Float](repeating: 0, count: n)
        for i in 0..<n { delta[i] = Float(generator.nextUniform() - 0.5) * 1e-3 }

        // The coordinator's path: an update accepted by the rule folds into the lane's accumulator.
        var settings = RuleSettings.defaults(for: mode)
        settings.bufferSize = Int.max
        settings.bufferTimeout = nil
        // One client folds every pass into one open buffer: the per-agent share (which would queue the
        // second) is not what this measures.
        settings.robustness.onePerBuffer = false
        var rule = mode.makeRule(settings: settings, parameters: [Float](repeating: 0, count: n))
        let client = ClientView(id: "bench", tier: nil)
        _ = rule.schedule(idle: [client], connected: [client], now: 0)
        var taskID: Int64 = 0
        // The coordinator computes the norm while validating, before the rule sees the update.
        let deltaNorm = Double(UpdateValidation.l2Norm(delta))
        func fold() throws {
            taskID += 1
            let update = RuleUpdate(taskID: taskID, clientID: client.id, lane: 0, baseVersion: 0, sampleCount: 1, delta: delta, norm: deltaNorm)
            if case .refused(_, let why) = rule.accept(update, now: 0) {
                throw ValidationError("the \(mode.rawValue) rule refused the benchmark's update: \(why)")
            }
        }

        // For the report only: the accumulator's kernel called directly, without the rule around it.
        var accumulator = WeightedAccumulator(parameterCount: n)
        func kernel() throws { try accumulator.add(delta, weight: 1) }

        // The limit: y += a·x over arrays of the same size, in two forms; the faster one is the limit. Each
        // form has its own y, as the rule and the kernel have their own accumulators: every pass then reads
        // the delta the previous pass read, and writes an array last touched four passes ago. (With one y
        // shared by both forms, the second form found its y still in the last-level cache, and the limit
        // came out 10–25 % above what any single pass could do.)
        var y = [Float](repeating: 0, count: n)
        var ySIMD = [Float](repeating: 0, count: n)
        let x = delta
        let a: Float = 0.5
        func plainAxpy() {
            y.withUnsafeMutableBufferPointer { yb in
                x.withUnsafeBufferPointer { xb in
                    let yp = yb.baseAddress!, xp = xb.baseAddress!
                    for i in 0..<n { yp[i] += a * xp[i] }
                }
            }
        }
        func simdAxpy() {
            ySIMD.withUnsafeMutableBufferPointer { yb in
                x.withUnsafeBufferPointer { xb in
                    let yp = UnsafeMutableRawPointer(yb.baseAddress!), xp = UnsafeRawPointer(xb.baseAddress!)
                    let av = SIMD16<Float>(repeating: a)
                    var i = 0
                    while i + 16 <= n {
                        let v = yp.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self)
                            + av * xp.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self)
                        yp.storeBytes(of: v, toByteOffset: 4 * i, as: SIMD16<Float>.self)
                        i += 16
                    }
                    while i < n { yb[i] += a * xb[i]; i += 1 }
                }
            }
        }

        // Warm up (first touch of every page, code paths), then interleave the timed passes so that load from
        // other processes on this machine hits all three alike.
        try fold(); try kernel(); plainAxpy(); simdAxpy()
        var foldBest = Double.infinity, kernelBest = Double.infinity, plainBest = Double.infinity, simdBest = Double.infinity
        for r in 0..<repetitions {
            foldBest = min(foldBest, try bestTime(repetitions: 1, fold))
            kernelBest = min(kernelBest, try bestTime(repetitions: 1, kernel))
            plainBest = min(plainBest, bestTime(repetitions: 1, plainAxpy))
            simdBest = min(simdBest, bestTime(repetitions: 1, simdAxpy))
            if (r + 1) % 10 == 0 { progress("fold: \(r + 1)/\(repetitions) passes") }
        }
        // Keep the results observable so no pass can be optimised away.
        if rule.globalParameters.count != n || y[n / 2].isNaN || ySIMD[n / 2].isNaN || accumulator.count == 0 { progress("fold: unexpected state") }

        let bytes = Double(12 * n)
        let foldGBs = bytes / foldBest / 1e9
        let plainGBs = bytes / plainBest / 1e9
        let simdGBs = bytes / simdBest / 1e9
        let kernelGBs = bytes / kernelBest / 1e9
        progress("fold: rule path \(format(foldGBs)) GB/s, WeightedAccumulator.add alone \(format(kernelGBs)) GB/s, plain axpy \(format(plainGBs)) GB/s, SIMD16 axpy \(format(simdGBs)) GB/s")
        let limit = max(plainGBs, simdGBs)
        return try [BenchResult(
            benchmark: "fold", figure: "aggregation fold (\(mode.rawValue) rule, \(n) parameters)",
            value: foldGBs, unit: "GB/s", limit: limit, limitUnit: "GB/s",
            limitDescription: "axpy of the same size, best of plain \(format(plainGBs)) and SIMD16 \(format(simdGBs)) GB/s",
            direction: .higherIsBetter, goal: 0.8,
            details: ["parameters": Double(n), "foldSeconds": foldBest, "accumulatorAddGBs": kernelGBs,
                      "plainAxpyGBs": plainGBs, "simdAxpyGBs": simdGBs])] + robustFolds(mode: mode)
    }

    /// What a robust buffer fold costs per update (its accepts, with the copy it keeps, and its share of the
    /// step) against the default mean fold on the same buffer, measured in the same run.
    func robustFolds(mode: AggregationMode) throws -> [BenchResult] {
        let n = robustParameters, k = robustBuffer
        var generator = SeededGenerator(seed: 9)
        let deltas = (0..<k).map { _ in (0..<n).map { _ in Float(generator.nextUniform() - 0.5) * 1e-3 } }
        let clients = (0..<k).map { ClientView(id: "c\($0)", tier: nil) }
        let norms = deltas.map { Double(UpdateValidation.l2Norm($0)) }
        func buffer(_ fold: BufferFold) throws -> Double {
            var settings = RuleSettings.defaults(for: mode)
            settings.bufferSize = k
            settings.bufferTimeout = nil
            settings.robustness.fold = fold
            var rule = mode.makeRule(settings: settings, parameters: [Float](repeating: 0, count: n))
            _ = rule.schedule(idle: clients, connected: clients, now: 0)
            var taskID: Int64 = 0
            return try bestTime(repetitions: 5) {
                for ((client, delta), norm) in zip(zip(clients, deltas), norms) {
                    taskID += 1
                    let update = RuleUpdate(taskID: taskID, clientID: client.id, lane: 0, baseVersion: rule.lane(0).version,
                                            sampleCount: 1, delta: delta, norm: norm)
                    if case .refused(_, let why) = rule.accept(update, now: 0) { throw ValidationError("refused: \(why)") }
                }
                guard rule.aggregations(now: 0).count == 1 else { throw ValidationError("the buffer of \(k) did not step") }
            } / Double(k)
        }
        let mean = try buffer(.mean)
        var results: [BenchResult] = []
        for fold in [BufferFold.trimmedMean(0.2), .median] {
            let seconds = try buffer(fold)
            progress("fold: \(fold) \(format(seconds * 1000)) ms per update vs mean \(format(mean * 1000)) ms (\(n) parameters, K = \(k))")
            results.append(BenchResult(
                benchmark: "fold", figure: "\(fold) buffer fold per update (\(n) parameters, K = \(k))",
                value: seconds * 1000, unit: "ms", limit: mean * 1000, limitUnit: "ms",
                limitDescription: "the mean fold on the same buffer (accept + its share of the step)",
                direction: .lowerIsBetter, goal: nil,
                details: ["parameters": Double(n), "buffer": Double(k)]))
        }
        return results
    }
}
