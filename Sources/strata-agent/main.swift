print("strata-agent")
