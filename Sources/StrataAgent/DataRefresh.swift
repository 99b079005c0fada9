import Logging
import NIOConcurrencyHelpers
import NIOCore
import StrataCore
import StrataData

/// Lets the refresh end the current session so that the agent reconnects at once with its new rows: a hello
/// announces the row counts, and an update may not claim more rows than its session's hello.
final class SessionControl: Sendable {
    private let state = NIOLockedValueBox<(channel: (any Channel)?, reconnect: Bool)>((nil, false))

    /// A session starts with the newest rows: an earlier request is served by it.
    func beginSession() {
        state.withLockedValue { $0 = (nil, false) }
    }

    /// The session's connection, closed at once if a refresh came while it was being opened.
    func attach(_ channel: any Channel) {
        let close = state.withLockedValue { state -> Bool in
            state.channel = channel
            return state.reconnect
        }
        if close { channel.close(promise: nil) }
    }

    /// New rows: close the session (if one is open); the connect loop reconnects without backoff.
    func requestReconnect() {
        let channel = state.withLockedValue { state -> (any Channel)? in
            state.reconnect = true
            return state.channel
        }
        channel?.close(promise: nil)
    }

    /// Whether the session that just ended was closed for a refresh.
    func endSession() -> Bool {
        state.withLockedValue { state in
            defer { state = (nil, false) }
            return state.reconnect
        }
    }
}

extension LoadedSamples {
    /// The same rows, bit for bit (a NaN kept for imputation equals itself), the same labels and columns.
    func hasSameRows(as other: LoadedSamples) -> Bool {
        func same(_ a: Dataset, _ b: Dataset) -> Bool {
            a.featureCount == b.featureCount && a.labels.map(\.bitPattern) == b.labels.map(\.bitPattern)
                && a.features.map(\.bitPattern) == b.features.map(\.bitPattern)
        }
        return featureColumns == other.featureColumns && same(train, other.train) && same(test, other.test)
            && trainLabelNames == other.trainLabelNames && testLabelNames == other.testLabelNames
    }
}

extension AgentService {
    /// Re-reads the data every `interval` (one read at a time, on its own thread, bounded by --max-rows), and
    /// when the rows changed makes them the agent's rows and ends the session, so that the next hello
    /// announces them. A failed or unusable read (the source unreachable, the columns changed) is logged and the
    /// agent trains on as before.
    func refreshLoop(every interval: Duration, current: NIOLockedValueBox<LoadedSamples>, control: SessionControl) async {
        var refreshes = 0
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            let started = ContinuousClock.now
            do {
                let fresh = try await DataSourceLoader.load(configuration.data)
                let old = current.withLockedValue { $0 }
                guard fresh.featureColumns == old.featureColumns else {
                    logger.warning("data refresh: the feature columns changed; training goes on with the rows read before (restart the agent to use new columns)",
                                   metadata: ["columns": "\(fresh.featureColumns.prefix(8).joined(separator: ","))"])
                    continue
                }
                if fresh.hasSameRows(as: old) {
                    logger.debug("data refresh: no change", metadata: ["rows": "\(fresh.rows.read)"])
                    continue
                }
                let checked = try Self.prepare(fresh, source: "\(configuration.data)", logger: logger)
                refreshes += 1
                current.withLockedValue { $0 = checked }
                logger.notice("data refreshed: reconnecting so that the coordinator sees the new rows", metadata: [
                    "train": "\(checked.train.count)", "test": "\(checked.test.count)", "wasTrain": "\(old.train.count)",
                    "wasTest": "\(old.test.count)", "refresh": "\(refreshes)", "seconds": "\((ContinuousClock.now - started).seconds)"])
                control.requestReconnect()
            } catch {
                logger.warning("data refresh failed; training goes on with the rows read before", metadata: ["error": "\(error)"])
            }
        }
    }
}
