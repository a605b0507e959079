//go:build !linux

package main

func benchMain([]string) bool { return false }
