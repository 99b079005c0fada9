print("strata-datagen")
