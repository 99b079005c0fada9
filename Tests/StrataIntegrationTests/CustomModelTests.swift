import Foundation
import GRDB
import Testing

/// A model the coordinator does not know: `--model custom --initial-model FILE.npz` with tensors of ranks 0 to
/// 3. The coordinator stores and serves it as named tensors; `stratactl export-model` gives back the same
/// names, shapes, dtype and values; a built-in agent refuses it and says why.
extension IntegrationSuite {
    @Suite(.serialized) struct CustomModelTests {
        static func python(_ script: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", "-c", script] + arguments
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = pipe
            try process.run()
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return (process.terminationStatus, output)
        }

        @Test(.timeLimit(.minutes(3)))
        func aCustomModelRoundTripsThroughExportUnchanged() throws {
            let box = Sandbox("custom-model")
            try box.makePKI(agents: 1)
            let written = try Self.python("""
                import numpy as np, sys
                rng = np.random.default_rng(7)
                np.savez(sys.argv[1], temperature=np.float32(0.5), embedding=rng.standard_normal((5, 3)).astype(np.float32),
                         conv=rng.standard_normal((2, 3, 4)).astype(np.float32), bias=np.array([1e-30, -0.0, 3.4e38], np.float32))
                """, [box.file("initial.npz")])
            try #require(written.status == 0, "python3 with NumPy is needed: \(written.output)")

            let (coordinator, port) = try box.startCoordinator(["--model", "custom", "--initial-model", box.file("initial.npz"),
                                                                "--features", "60", "--max-duration", "60"])
            defer { if coordinator.isRunning { coordinator.terminate() } }
            let admin = try box.endpointPort("admin")

            // A built-in agent cannot train it: it stops before training and says so.
            try _ = box.makeData(clients: 1)
            let agent = try box.start(Binaries.path("strata-agent"), box.agentArguments(port: port, id: "agent-01", database: box.file("data/client-01.sqlite")),
                                      log: "agent-01.log")
            try box.waitForExit(agent, timeout: 30)
            #expect(agent.terminationStatus == 1)
            #expect(box.read("agent-01.log").contains("the federation trains a custom model (custom, 4 tensors, 43 parameters)"), "\(box.read("agent-01.log").suffix(1500))")

            let export = try AdminTests.ctl(box, adminPort: admin, ["export-model", "0", "--out", box.file("exported.npz")])
            try #require(export.status == 0, "\(export.output)")
            let compared = try Self.python("""
                import numpy as np, sys, json
                a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
                assert list(a.keys()) == list(b.keys()), (list(a.keys()), list(b.keys()))
                for k in a.keys():
                    assert a[k].dtype == b[k].dtype == np.float32, (k, a[k].dtype, b[k].dtype)
                    assert a[k].shape == b[k].shape, (k, a[k].shape, b[k].shape)
                    assert a[k].tobytes() == b[k].tobytes(), k
                meta = json.load(open(sys.argv[3]))
                assert meta["model"] == "custom", meta["model"]
                print("same", ",".join(f"{k}{list(b[k].shape)}" for k in b.keys()))
                """, [box.file("initial.npz"), box.file("exported.npz"), box.file("exported.json")])
            #expect(compared.status == 0 && compared.output.contains("same temperature[],embedding[5, 3],conv[2, 3, 4],bias[3]"), "\(compared.output)")

            // The state database remembers the tensors: another file for the same database is refused.
            coordinator.terminate()
            try box.waitForExit(coordinator, timeout: 30)
            _ = try Self.python("import numpy as np, sys; np.savez(sys.argv[1], w=np.zeros(3, np.float32))", [box.file("other.npz")])
            let second = try box.run(Binaries.path("strata-coordinator"), [
                "--cert", box.file("pki/coordinator.crt"), "--key", box.file("pki/coordinator.key"), "--ca", box.file("pki/ca.crt"),
                "--state", box.file("coordinator.sqlite"), "--port", "0", "--model", "custom", "--initial-model", box.file("other.npz"),
                "--features", "60"], timeout: 30)
            #expect(second.status != 0 && second.output.contains("custom:60x10:temperature[],embedding[5, 3],conv[2, 3, 4],bias[3]"), "\(second.output.suffix(800))")
            // And a file that is not float32 is refused at start, by name.
            _ = try Self.python("import numpy as np, sys; np.savez(sys.argv[1], w=np.zeros(3))", [box.file("double.npz")])
            let double = try box.run(Binaries.path("strata-coordinator"), [
                "--cert", box.file("pki/coordinator.crt"), "--key", box.file("pki/coordinator.key"), "--ca", box.file("pki/ca.crt"),
                "--state", box.file("new.sqlite"), "--model", "custom", "--initial-model", box.file("double.npz"), "--features", "60"], timeout: 30)
            #expect(double.status != 0 && double.output.contains("array w has dtype <f8; model tensors are float32"), "\(double.output.suffix(800))")
        }
    }
}
