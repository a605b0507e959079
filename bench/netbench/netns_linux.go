package main

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// enterNetns moves the calling goroutine's thread into the network
// namespace at path for good: the thread stays locked, so sockets this
// goroutine makes are made there and no other goroutine runs on it.
func enterNetns(path string) error {
	runtime.LockOSThread()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("enter netns %s: %w", path, err)
	}
	return nil
}
