// StrataCore
