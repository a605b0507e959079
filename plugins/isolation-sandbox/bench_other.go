//go:build darwin

package main

func benchRequested() bool { return false }
func benchMain()           {}
