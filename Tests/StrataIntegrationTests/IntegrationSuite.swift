import Testing

/// Every integration suite runs inside this one, one test at a time: they start real coordinators and
/// agents, and on a 2-core machine concurrent federations starve each other (and the cooperative thread
/// pool that async tests need) into timeouts that say nothing about the code.
@Suite(.serialized) enum IntegrationSuite {}
