import Foundation
import NIOHTTP1
import Testing
@testable import StrataAdmin
import StrataWire
import StrataCore

@Suite struct NumPyArchiveTests {
    @Test func crcMatchesTheStandardCheckValue() {
        #expect(NumPyArchive.crc32(Data("123456789".utf8)) == 0xCBF4_3926)
    }

    @Test func npyHeaderIsAlignedAndDescribesTheArray() throws {
        let data = NumPyArchive.npy(.init(name: "weight", shape: [3, 2], values: [1, 2, 3, 4, 5, -0.5]))
        #expect(Array(data.prefix(8)) == [0x93] + Array("NUMPY".utf8) + [1, 0])
        let headerLength = Int(data[8]) | Int(data[9]) << 8
        #expect((10 + headerLength) % 64 == 0)
        let header = String(decoding: data[10..<10 + headerLength], as: UTF8.self)
        #expect(header.hasPrefix("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }"))
        #expect(header.hasSuffix("\n"))
        let payload = data.suffix(from: 10 + headerLength)
        #expect(payload.count == 24)
        let last = payload.suffix(4).withUnsafeBytes { Float(bitPattern: UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self))) }
        #expect(last == -0.5)
        let vector = NumPyArchive.npy(.init(name: "bias", shape: [2], values: [0, 1]))
        #expect(String(decoding: vector[10..<80], as: UTF8.self).contains("'shape': (2,)"))
    }

    @Test func npzIsAZipOfStoredNpyMembersWithCorrectCRCs() throws {
        let arrays = [NumPyArchive.Array(name: "weight", shape: [2, 2], values: [1, 2, 3, 4]),
                      NumPyArchive.Array(name: "bias", shape: [2], values: [5, 6])]
        let zip = try NumPyArchive.npz(arrays)
        func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(zip[at + $1]) << (8 * UInt32($1)) } }
        func u16(_ at: Int) -> Int { Int(zip[at]) | Int(zip[at + 1]) << 8 }
        // End of central directory: two entries, pointing at a central directory of two file headers.
        let end = zip.count - 22
        #expect(u32(end) == 0x0605_4b50)
        #expect(u16(end + 10) == 2)
        var central = Int(u32(end + 16))
        var names: [String] = []
        for array in arrays {
            #expect(u32(central) == 0x0201_4b50)
            let nameLength = u16(central + 28)
            let local = Int(u32(central + 42))
            names.append(String(decoding: zip[central + 46..<central + 46 + nameLength], as: UTF8.self))
            #expect(u32(local) == 0x0403_4b50)
            #expect(u16(local + 8) == 0)   // stored
            let size = Int(u32(local + 18))
            let payload = zip[local + 30 + nameLength..<local + 30 + nameLength + size]
            #expect(Data(payload) == NumPyArchive.npy(array))
            #expect(u32(local + 14) == NumPyArchive.crc32(Data(payload)))
            central += 46 + nameLength
        }
        #expect(names == ["weight.npy", "bias.npy"])
    }
}

@Suite struct ConnectionSettingsTests {
    func tempConfig(_ json: String) throws -> String {
        let dir = NSTemporaryDirectory() + "stratactl-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = dir + "/stratactl.json"
        try json.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func flagsBeatEnvironmentBeatsConfigFileBeatsDefaults() throws {
        let config = try tempConfig(#"{"coordinator": "10.0.0.5:9000", "cert": "admin.crt", "key": "/abs/admin.key", "ca": "ca.crt", "serverName": "coord"}"#)
        let dir = (config as NSString).deletingLastPathComponent
        let fromFile = try ConnectionSettings.resolve(flags: .init(config: config), environment: [:])
        #expect(fromFile.host == "10.0.0.5" && fromFile.port == 9000)
        #expect(fromFile.cert == dir + "/admin.crt" && fromFile.key == "/abs/admin.key" && fromFile.ca == dir + "/ca.crt")
        #expect(fromFile.serverName == "coord")

        let environment = ["STRATACTL_COORDINATOR": "127.0.0.1:7401", "STRATACTL_CERT": "/env/cert.pem", "STRATACTL_CONFIG": config]
        let fromEnv = try ConnectionSettings.resolve(flags: .init(), environment: environment)
        #expect(fromEnv.port == 7401 && fromEnv.cert == "/env/cert.pem" && fromEnv.ca == dir + "/ca.crt")

        let fromFlags = try ConnectionSettings.resolve(flags: .init(coordinator: "[::1]:7500", cert: "/flag/cert.pem"), environment: environment)
        #expect(fromFlags.host == "::1" && fromFlags.port == 7500 && fromFlags.cert == "/flag/cert.pem")

        let defaults = try ConnectionSettings.resolve(flags: .init(), environment: ["HOME": "/nonexistent-home"])
        #expect(defaults.host == "127.0.0.1" && defaults.port == 7301 && defaults.cert == nil && defaults.serverName == "localhost")
    }

    @Test func aNamedConfigFileMustExistAndParse() throws {
        #expect(throws: AdminClientError.self) { try ConnectionSettings.resolve(flags: .init(config: "/no/such/file.json"), environment: [:]) }
        let broken = try tempConfig("{not json")
        #expect(throws: AdminClientError.self) { try ConnectionSettings.resolve(flags: .init(config: broken), environment: [:]) }
    }

    @Test func addressesParseOrFailClearly() throws {
        #expect(try ConnectionSettings.parseAddress("example.org:7301") == ("example.org", 7301))
        #expect(try ConnectionSettings.parseAddress("example.org") == ("example.org", 7301))
        #expect(try ConnectionSettings.parseAddress("[fe80::1]:9") == ("fe80::1", 9))
        for bad in ["host:", "host:abc", ":7301", "host:70000"] {
            #expect(throws: AdminClientError.self, "\(bad)") { try ConnectionSettings.parseAddress(bad) }
        }
    }

    @Test func aClientWithoutCertificateFilesSaysWhatToPass() {
        do {
            _ = try AdminClient(settings: ConnectionSettings())
            Issue.record("expected a configuration error")
        } catch let error as AdminClientError {
            #expect(error.kind == .configuration && error.exitCode == 6)
            #expect(error.message.contains("--cert") && error.message.contains("STRATACTL_CERT"))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }
}

@Suite struct AnswerInterpretationTests {
    @Test func statusesMapToTypedErrorsAndExitCodes() throws {
        let body = try JSONEncoder().encode(AdminErrorBody(error: "conflict", message: "there are 2 tiers"))
        let cases: [(HTTPResponseStatus, AdminClientError.Kind, Int32)] = [
            (.badRequest, .rejected, 3), (.conflict, .rejected, 3), (.forbidden, .notAuthorized, 4),
            (.notFound, .notFound, 2), (.serviceUnavailable, .unavailable, 5), (.internalServerError, .failed, 1),
        ]
        for (status, kind, code) in cases {
            do {
                _ = try AdminClient.interpret(status: status, body: body)
                Issue.record("\(status) should throw")
            } catch let error as AdminClientError {
                #expect(error.kind == kind && error.exitCode == code)
                #expect(error.message.contains("there are 2 tiers"))
            }
        }
        #expect(try AdminClient.interpret(status: .ok, body: Data("{}".utf8)) == Data("{}".utf8))
    }
}

@Suite struct RenderingTests {
    @Test func tablesAlignColumns() {
        var table = Table(["A", "LONGER"])
        table.add(["value", "x"])
        table.add(["v", "yy"])
        #expect(table.render() == "A      LONGER\nvalue  x\nv      yy\n")
    }

    @Test func displayFormatsNumbersAndDurations() {
        #expect(Display.number(0.85274) == "0.8527")
        #expect(Display.number(-1.5, digits: 2) == "-1.50")
        #expect(Display.number(nil) == "-")
        #expect(Display.duration(0.25) == "250ms")
        #expect(Display.duration(2.345) == "2.35s")
        #expect(Display.duration(250) == "4m10s")
        #expect(Display.duration(3 * 3600 + 300) == "3h05m")
    }

    @Test func statusShowsTiersAndHealth() {
        let status = StatusReport(mode: "strata", globalVersion: 42, latestAccuracy: 0.8, latestEvaluatedVersion: 40, bestAccuracy: 0.81,
                                  targetAccuracy: nil, uptimeSeconds: 65, ready: true, draining: false, connectedClients: 3,
                                  clientsByHealth: ["healthy": 2, "suspect": 1],
                                  tiers: [TierReport(tier: 0, members: ["a", "b"], latencyMin: 0.1, latencyMax: 0.2, version: 30, updateRate: 4.25, weight: 0.7)],
                                  updatesAccepted: 100, updatesRefused: 1)
        let text = Render.status(status)
        #expect(text.contains("global version  42"))
        #expect(text.contains("0.8000 (version 40), best 0.8100"))
        #expect(text.contains("healthy 2, suspect 1"))
        #expect(text.contains("100ms-200ms"))
    }

    /// A linear model: no accuracy line (it is always 0), RMSE, MAE and R² instead; huge values stay printable.
    @Test func aRegressionShowsItsErrorsInsteadOfAccuracy() {
        var status = StatusReport(mode: "fedavg", globalVersion: 9, latestAccuracy: nil, latestEvaluatedVersion: 8, bestAccuracy: nil,
                                  targetAccuracy: nil, uptimeSeconds: 5, ready: true, draining: false, connectedClients: 3,
                                  clientsByHealth: [:], tiers: [], updatesAccepted: 9, updatesRefused: 0,
                                  best: BestModelReport(metric: "rmse", direction: "lower-is-better", version: 7, score: 12.3456, accuracy: 0, loss: 0.02,
                                                        answered: 3, asked: 3, at: 0, metrics: ["rmse": 12.3456, "mae": 9.5, "r2": 0.93]),
                                  targetMetric: "rmse", target: 12, model: "linear", latestMetrics: ["rmse": 123456.7, "mae": 9.5, "r2": 0.9312345])
        var text = Render.status(status)
        #expect(!text.contains("accuracy"), "\(text)")
        #expect(text.contains("metrics         rmse 1.2346e+05, mae 9.5000, r2 0.9312 (version 8)"), "\(text)")
        #expect(text.contains("best            version 7: rmse 12.3456 (3/3 agents answered), target rmse 12.0000"), "\(text)")
        status.latestMetrics = nil
        #expect(Render.status(status).contains("metrics         none reported"))
        // The best version within one standard error of a better score seen earlier says so; an equal one does not.
        status.bestScoreSeen = 12.1
        #expect(Render.status(status).contains("(3/3 agents answered); best rmse seen 12.1000, this version is the latest within its standard error"))
        status.bestScoreSeen = 12.3456
        #expect(!Render.status(status).contains("seen"))
        #expect(Display.number(1e300) == "1e+300")

        let entry = EvaluationEntry(version: 8, accuracy: 0, loss: 0.5, answered: 3, asked: 3, required: 2, counted: true, metric: "rmse",
                                    score: 2.5, best: true, versionCreatedAt: 0, at: 0, metrics: ["rmse": 2.5, "mae": 2, "r2": 0.75], statisticsAnswered: 3)
        text = Render.evaluations(EvaluationsReport(targetMetric: "rmse", entries: [entry], model: "linear"), now: 0)
        #expect(text.hasPrefix("VERSION  RMSE    MAE     R2      LOSS"), "\(text)")
        #expect(text.contains("8        2.5000  2.0000  0.7500  0.5000"), "\(text)")
        let classification = EvaluationEntry(version: 3, accuracy: 0.8, loss: 0.5, answered: 3, asked: 3, required: 2, counted: true,
                                             metric: "accuracy", score: 0.8, best: false, versionCreatedAt: 0, at: 0, metrics: ["macro-f1": 0.75])
        text = Render.evaluations(EvaluationsReport(targetMetric: "accuracy", entries: [classification]), now: 0)
        #expect(text.hasPrefix("VERSION  ACCURACY  MACRO-F1  LOSS"), "\(text)")
    }
}
