// StrataTransport
