//go:build !linux

package store

// lockHolder cannot tell the lock's holder on this platform.
func lockHolder(string) int { return 0 }

func describeProcess(int) string { return "" }
