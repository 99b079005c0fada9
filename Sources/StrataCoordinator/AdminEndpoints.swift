import Foundation
import NIOCore
import NIOHTTP1
import StrataTransport
import StrataWire

/// Routes of the admin API (mutual TLS, admin and viewer certificates). Reads are GET, actions POST; bodies and
/// answers are JSON (StrataWire/AdminAPI.swift); errors are `AdminErrorBody` with a 4xx/5xx status. A viewer
/// (OU=viewer) may use every GET route; every POST answers it 403 and is audited as "forbidden".
enum AdminRoutes {
    static func handle(_ request: HTTPRequest, coordinator: Coordinator) async -> HTTPResponse {
        let actor = request.peer?.commonName ?? "unknown"
        let s = request.segments
        guard s.first == "v1" else {
            return .error(AdminError(.notFound, "unknown path \(request.path); routes start with \(AdminAPI.prefix)/"))
        }
        let route = Array(s.dropFirst())
        if request.method != .GET, request.peer?.role != .admin {
            // Decided on the method alone, before any route runs: a new action is closed to viewers by default.
            let action = route.count == 3 && route[0] == "clients" ? route[2] : (route.first ?? "unknown")
            let target = route.count == 3 && route[0] == "clients" ? route[1] : (action == "retier" ? "tiers" : request.path)
            let refusal = AdminError(.forbidden,
                "'\(actor)' holds a read-only \(request.peer?.role.rawValue ?? "unknown") certificate: \(action) changes the federation and "
                + "needs an admin certificate (Certs/strata-pki.sh admin NAME); viewers may use status, tiers, clients, client, "
                + "models, evaluations, export-model, audit and watch")
            await coordinator.auditRefusal(actor: actor, action: action, target: target, error: refusal)
            return .error(refusal)
        }
        do {
            switch (request.method, route.count) {
            case (.GET, 1) where route[0] == "status":
                return .json(try await coordinator.status())
            case (.GET, 1) where route[0] == "tiers":
                return .json(await coordinator.tiersReport())
            case (.GET, 1) where route[0] == "clients":
                let tier = try request.query["tier"].map { try integer($0, name: "tier") }
                return .json(try await coordinator.clientsReport(tier: tier, state: request.query["state"]))
            case (.GET, 2) where route[0] == "clients":
                return .json(try await coordinator.clientDetail(id: route[1], limit: try limit(request, default: 50)))
            case (.GET, 1) where route[0] == "models":
                return .json(try await coordinator.modelsReport(limit: try limit(request, default: 20)))
            case (.GET, 2) where route[0] == "models":
                let selector: Coordinator.ModelSelector = switch route[1] {
                case "best": .best
                case "latest": .latest
                default: .version(Int64(try integer(route[1], name: "version (a number, best or latest)")))
                }
                return .json(try await coordinator.modelParameters(selector))
            case (.GET, 1) where route[0] == "evaluations":
                return .json(try await coordinator.evaluationsReport(limit: try limit(request, default: 20)))
            case (.GET, 1) where route[0] == "audit":
                return .json(try await coordinator.auditReport(limit: try limit(request, default: 50)))
            case (.POST, 1) where route[0] == "retier":
                return .json(try await coordinator.retier(actor: actor))
            case (.POST, 3) where route[0] == "clients":
                let id = route[1]
                switch route[2] {
                case "pin": return .json(try await coordinator.pin(clientID: id, tier: try request.decode(PinRequest.self).tier, actor: actor))
                case "unpin": return .json(try await coordinator.unpin(clientID: id, actor: actor))
                case "evict": return .json(try await coordinator.evict(clientID: id, reason: try request.decode(EvictRequest.self).reason, actor: actor))
                case "admit": return .json(try await coordinator.readmit(clientID: id, actor: actor))
                default: break
                }
            default:
                break
            }
            return .error(AdminError(.notFound, "no route \(request.method) \(request.path) (docs/OPERATIONS.md lists the admin API)"))
        } catch let error as AdminError {
            return .error(error)
        } catch {
            return .error(AdminError(.internalError, "\(error)"))
        }
    }

    private static func integer(_ text: String, name: String) throws -> Int {
        guard let value = Int(text) else { throw AdminError(.badRequest, "\(name) must be an integer, got '\(text)'") }
        return value
    }

    private static func limit(_ request: HTTPRequest, default value: Int) throws -> Int {
        guard let text = request.query["limit"] else { return value }
        let limit = try integer(text, name: "limit")
        guard (1...10_000).contains(limit) else { throw AdminError(.badRequest, "limit must be between 1 and 10000") }
        return limit
    }

    /// Only admin and viewer certificates get an answer; anything else gets 403 and the connection is closed.
    static func authorize(_ peer: PeerIdentity?) -> HTTPResponse? {
        guard let peer else {
            return .json(AdminErrorBody(error: "not-authorized", message: "the admin port needs a client certificate"), status: .forbidden)
        }
        guard peer.role == .admin || peer.role == .viewer else {
            return .json(AdminErrorBody(error: "not-authorized", message:
                "this port admits admin certificates (and read-only viewer ones); '\(peer.commonName)' has role \(peer.role.rawValue). "
                + "Issue one with Certs/strata-pki.sh admin NAME (or viewer NAME)"),
                status: .forbidden)
        }
        return nil
    }
}

/// `/metrics` (Prometheus text format 0.0.4), `/healthz` (the process is alive) and `/readyz` (state
/// restored and accepting agents). Plain HTTP, bound to localhost by default.
enum MetricsRoutes {
    static func handle(_ request: HTTPRequest, coordinator: Coordinator, metrics: CoordinatorMetrics) async -> HTTPResponse {
        guard request.method == .GET else { return .text(.methodNotAllowed, "GET only\n") }
        switch request.path {
        case "/metrics":
            metrics.apply(await coordinator.gaugeSnapshot())
            return HTTPResponse(status: .ok, contentType: "text/plain; version=0.0.4; charset=utf-8", body: ByteBuffer(bytes: metrics.render()))
        case "/healthz":
            return .text(.ok, "ok\n")
        case "/readyz":
            return await coordinator.isReady ? .text(.ok, "ready\n") : .text(.serviceUnavailable, "not ready: restoring state or stopping\n")
        default:
            return .text(.notFound, "not found; try /metrics, /healthz or /readyz\n")
        }
    }
}
