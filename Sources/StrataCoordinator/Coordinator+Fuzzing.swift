import StrataWire

/// The calls an agent session (`AgentServer.runSession`) makes into the coordinator, open to the fuzz
/// targets of this package (Sources/StrataFuzzTargets) and nothing else: `package`, not `public`. They
/// forward unchanged, so the fuzzer drives exactly the code a connected peer drives.
extension Coordinator {
    package func fuzzAdmit(clientID: String, hello: Hello, mailbox: AsyncStream<Message>.Continuation) async -> Admission {
        await admit(clientID: clientID, hello: hello, mailbox: mailbox)
    }

    package func fuzzSessionStarted(_ session: AgentSessionHandle) async {
        await sessionStarted(session)
    }

    package func fuzzHandleUpdate(_ update: Update, from session: AgentSessionHandle) async {
        await handleUpdate(update, from: session)
    }

    package func fuzzSessionEnded(_ session: AgentSessionHandle, reason: String) async {
        await sessionEnded(session, reason: reason)
    }

    /// Waits for the commits already due (they run in a task of their own), so one input's effects are
    /// complete before the next step looks at the mailboxes.
    package func fuzzWaitUntilCommitted() async {
        await waitUntilCommitted()
    }
}
