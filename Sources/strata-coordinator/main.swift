print("strata-coordinator")
