import Testing
@testable import StrataCore

@Suite struct SyntheticGeneratorTests {
    @Test func deterministicForASeed() {
        let c = SyntheticConfig(clientCount: 4, seed: 7)
        let a = SyntheticGenerator.generate(c, maxSamplesPerClient: 500)
        let b = SyntheticGenerator.generate(c, maxSamplesPerClient: 500)
        #expect(a.map(\.train.features) == b.map(\.train.features))
        #expect(a.map(\.train.labels) == b.map(\.train.labels))
        #expect(a.map(\.test.features) == b.map(\.test.features))
        var c2 = c
        c2.seed = 8
        let d = SyntheticGenerator.generate(c2, maxSamplesPerClient: 500)
        #expect(a.map(\.train.features) != d.map(\.train.features))
    }

    @Test func sizesLabelsAndSplit() {
        let clients = SyntheticGenerator.generate(SyntheticConfig(seed: 1))
        #expect(clients.count == 30)
        #expect(clients.map(\.clientIndex) == Array(0..<30))
        for c in clients {
            let n = c.train.count + c.test.count
            #expect(n >= 50)
            #expect(c.test.count == Int((0.2 * Double(n) + 1e-9).rounded(.down)))
            #expect(c.train.featureCount == 60 && c.test.featureCount == 60)
            #expect(c.train.features.count == c.train.count * 60)
            #expect((c.train.labels + c.test.labels).allSatisfy { $0 >= 0 && $0 < 10 && $0 == $0.rounded() })
            #expect((c.train.features + c.test.features).allSatisfy { $0.isFinite })
        }
        // Lognormal(4, 2) sizes vary a lot between clients.
        let sizes = clients.map { $0.train.count + $0.test.count }
        #expect(sizes.max()! > 3 * sizes.min()!, "\(sizes)")
    }

    @Test func fiftySamplesSplitFortyTen() {
        // With a cap of 50 every client has exactly 50 samples: 40 train / 10 test.
        for c in SyntheticGenerator.generate(SyntheticConfig(clientCount: 5, seed: 2), maxSamplesPerClient: 50) {
            #expect(c.train.count == 40 && c.test.count == 10)
        }
    }

    /// `testMultiple`: the training rows and the held-out rows stay those of multiple 1; the rows added to the
    /// test set come from the same client's distribution (their mean is nearest their own client's rows).
    @Test func testMultipleAddsRowsFromTheClientsOwnDistribution() {
        let one = SyntheticGenerator.generate(SyntheticConfig(clientCount: 4, seed: 9), maxSamplesPerClient: 400)
        let four = SyntheticGenerator.generate(SyntheticConfig(clientCount: 4, testMultiple: 4, seed: 9), maxSamplesPerClient: 400)
        func mean(_ rows: ArraySlice<Float>) -> [Double] {
            var sums = [Double](repeating: 0, count: 60)
            for (i, x) in rows.enumerated() { sums[i % 60] += Double(x) }
            return sums.map { $0 / Double(rows.count / 60) }
        }
        func distance(_ a: [Double], _ b: [Double]) -> Double { zip(a, b).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) } }
        let trainMeans = one.map { mean($0.train.features[...]) }
        for k in 0..<4 {
            #expect(four[k].train.features == one[k].train.features && four[k].train.labels == one[k].train.labels)
            let held = one[k].test.count
            #expect(four[k].test.count == 4 * held)
            #expect(Array(four[k].test.features.prefix(held * 60)) == one[k].test.features)
            #expect(Array(four[k].test.labels.prefix(held)) == one[k].test.labels)
            let added = mean(four[k].test.features.dropFirst(held * 60))
            let nearest = trainMeans.indices.min { distance(added, trainMeans[$0]) < distance(added, trainMeans[$1]) }
            #expect(nearest == k, "the added rows of client \(k) look like client \(nearest ?? -1)'s")
        }
    }

    @Test func capAndClientCountDoNotChangeOtherClients() {
        let small = SyntheticGenerator.generate(SyntheticConfig(clientCount: 3, seed: 5), maxSamplesPerClient: 200)
        let large = SyntheticGenerator.generate(SyntheticConfig(clientCount: 6, seed: 5), maxSamplesPerClient: 200)
        for k in 0..<3 {
            #expect(small[k].train.features == large[k].train.features)
            #expect(small[k].train.count + small[k].test.count <= 200)
        }
    }

    @Test func iidModeDiffersAndSharesTheModel() {
        let c = SyntheticConfig(iid: true, clientCount: 3, seed: 3)
        let iid = SyntheticGenerator.generate(c, maxSamplesPerClient: 400)
        var nonIID = c
        nonIID.iid = false
        let het = SyntheticGenerator.generate(nonIID, maxSamplesPerClient: 400)
        #expect(iid.map(\.train.labels) != het.map(\.train.labels))
        // IID: v_k = 0, so feature means are near 0 for every client (the first feature has variance 1).
        for client in iid {
            let d = client.train
            var mean = 0.0
            for i in 0..<d.count { mean += Double(d.features[i * 60]) }
            mean /= Double(d.count)
            #expect(abs(mean) < 0.35, "client \(client.clientIndex) mean \(mean)")
        }
        // A single softmax model fits IID data pooled from all clients well (one shared W, b).
        let spec = ModelSpec(kind: .softmaxRegression, featureCount: 60, outputCount: 10)
        let pooled = Dataset.concatenating(iid.map(\.train), featureCount: 60)
        let r = Trainer.train(spec: spec, parameters: spec.initialParameters(), data: pooled,
                              config: TrainingConfig(learningRate: 0.05, batchSize: 10, epochs: 20, seed: 1))
        let acc = Trainer.evaluate(spec: spec, parameters: r.parameters,
                                   data: Dataset.concatenating(iid.map(\.test), featureCount: 60)).accuracy
        #expect(acc > 0.6, "IID pooled accuracy \(acc)")
    }

    /// Central (pooled) softmax regression on Synthetic(1,1), 10 clients, seed 1, 80/20 split,
    /// lr 0.01, batch 10, 20 epochs — the paper's local hyperparameters, trained centrally.
    @Test func centralTrainingOnSyntheticOneOneBeatsChance() {
        let clients = SyntheticGenerator.generate(SyntheticConfig(alpha: 1, beta: 1, clientCount: 10, seed: 1))
        let train = Dataset.concatenating(clients.map(\.train), featureCount: 60)
        let test = Dataset.concatenating(clients.map(\.test), featureCount: 60)
        let spec = ModelSpec(kind: .softmaxRegression, featureCount: 60, outputCount: 10)
        let r = Trainer.train(spec: spec, parameters: spec.initialParameters(), data: train,
                              config: TrainingConfig(learningRate: 0.01, batchSize: 10, epochs: 20, seed: 1))
        let e = Trainer.evaluate(spec: spec, parameters: r.parameters, data: test)
        var perClass = [Int](repeating: 0, count: 10)
        for l in test.labels { perClass[Int(l)] += 1 }
        let majority = Float(perClass.max()!) / Float(test.count)
        print("Synthetic(1,1) seed 1, 10 clients: train \(train.count), test \(test.count), central test accuracy \(e.accuracy), loss \(e.loss), majority-class baseline \(majority)")
        #expect(e.accuracy > 0.5, "accuracy \(e.accuracy)")
        #expect(e.accuracy > majority + 0.2, "accuracy \(e.accuracy) vs majority class \(majority)")
    }
}
