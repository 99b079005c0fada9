import Testing
@testable import StrataCore

@Suite struct StalenessFunctionTests {
    @Test func handComputedValues() {
        #expect(StalenessFunction.constant.factor(staleness: 100) == 1)
        #expect(StalenessFunction.polynomial(exponent: 0.5).factor(staleness: 3) == 0.5)
        #expect(StalenessFunction.polynomial(exponent: 0.5).factor(staleness: 0) == 1)
        #expect(StalenessFunction.polynomial(exponent: 1).factor(staleness: 4) == 0.2)
        let hinge = StalenessFunction.hinge(slope: 10, threshold: 4)
        #expect(hinge.factor(staleness: 4) == 1)
        #expect(hinge.factor(staleness: 5) == 1.0 / 11.0)
        #expect(hinge.factor(staleness: 6) == 1.0 / 21.0)
        #expect(StalenessFunction.fedBuff.factor(staleness: 3) == 0.5)
        #expect(StalenessFunction.fedBuff.factor(staleness: 0) == 1)
        // Negative staleness counts as fresh.
        #expect(StalenessFunction.fedBuff.factor(staleness: -2) == 1)
    }

    @Test(arguments: ["constant", "polynomial:0.5", "hinge:10:4", "fedbuff", "polynomial:2", "hinge:0.25:0"])
    func parseDescriptionRoundTrip(text: String) throws {
        let f = try StalenessFunction(parsing: text)
        #expect(f.description == text)
        #expect(try StalenessFunction(parsing: f.description) == f)
    }

    @Test func parsesToTheRightCases() throws {
        #expect(try StalenessFunction(parsing: "polynomial:0.5") == .polynomial(exponent: 0.5))
        #expect(try StalenessFunction(parsing: "hinge:10:4") == .hinge(slope: 10, threshold: 4))
        #expect(try StalenessFunction(parsing: "FedBuff") == .fedBuff)
        #expect(StalenessFunction.hinge(slope: 10, threshold: 4).description == "hinge:10:4")
        #expect(StalenessFunction.polynomial(exponent: 0.1).description == "polynomial:0.1")
    }

    @Test(arguments: ["", "const", "polynomial", "polynomial:", "polynomial:x", "polynomial:-1", "polynomial:nan",
                      "hinge:10", "hinge:10:4:1", "hinge:10:-1", "hinge:10:1.5", "fedbuff:1", "constant:0", "polynomial:inf"])
    func badStringsThrow(text: String) {
        #expect(throws: StrataCoreError.self) { try StalenessFunction(parsing: text) }
    }
}
