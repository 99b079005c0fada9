// StrataCoordinator
