package sdk

// watchParent does nothing on Linux: the core forks plugins with Pdeathsig.
func watchParent() {}
