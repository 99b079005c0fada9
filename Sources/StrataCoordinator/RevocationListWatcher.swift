import Logging
import StrataTransport

/// Keeps the coordinator's certificate revocation list current: reloads it when the file changes (inode, size or
/// mtime, polled every `interval`) or on request (SIGHUP). A reload builds a new CA + CRL store; connections
/// made afterwards use it, established sessions keep running. A reload that fails keeps the list in force and
/// logs why. One actor, so reloads never overlap and their log lines stay in order.
actor RevocationListWatcher {
    private let context: TLSContext
    private let path: String
    private let logger: Logger
    /// The file version last attempted (loaded or refused), so a broken file is reported once, not every poll.
    private var seen: FileSignature?
    private var missingReported = false

    init(context: TLSContext, path: String, logger: Logger) {
        self.context = context
        self.path = path
        self.logger = logger
        self.seen = context.revocationList?.signature
    }

    /// Polls until cancelled.
    func run(every interval: Duration) async {
        while (try? await Task.sleep(for: interval)) != nil {
            checkForChange()
        }
    }

    func checkForChange() {
        guard let now = FileSignature.of(path) else {
            if !missingReported {
                missingReported = true
                logger.error("the revocation list file cannot be read; the list loaded before stays in force",
                             metadata: ["crl": "\(path)", "next": "restore the file (Certs/strata-pki.sh crl) or send SIGHUP once it is back"])
            }
            return
        }
        missingReported = false
        guard now != seen else { return }
        reload(trigger: "file changed")
    }

    func reload(trigger: String) {
        seen = FileSignature.of(path)
        do {
            let info = try context.reloadRevocationList()
            seen = info.signature
            logger.notice("revocation list reloaded: new connections are checked against it", metadata: Self.metadata(info, trigger: trigger))
            Self.warnIfExpiringSoon(info, logger: logger)
        } catch {
            logger.error("revocation list reload failed; the list loaded before stays in force",
                         metadata: ["crl": "\(path)", "trigger": "\(trigger)", "error": "\(error)"])
        }
    }

    static func metadata(_ info: RevocationListInfo, trigger: String? = nil) -> Logger.Metadata {
        var metadata: Logger.Metadata = ["crl": "\(info.path)", "revoked": "\(info.revokedCount)", "nextUpdate": "\(info.nextUpdate ?? "none")"]
        if let trigger { metadata["trigger"] = "\(trigger)" }
        return metadata
    }

    /// After nextUpdate OpenSSL refuses every peer (fail closed): say so a week ahead.
    static func warnIfExpiringSoon(_ info: RevocationListInfo, logger: Logger) {
        guard let seconds = info.secondsUntilNextUpdate, seconds < 7 * 86_400 else { return }
        logger.warning("the revocation list expires soon; after that every connection is refused",
                       metadata: ["crl": "\(info.path)", "nextUpdate": "\(info.nextUpdate ?? "?")", "next": "run Certs/strata-pki.sh --dir PKI_DIR crl"])
    }
}
