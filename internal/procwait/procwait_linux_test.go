package procwait

import (
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestGoneReturnsWhenTheProcessExits(t *testing.T) {
	cmd := exec.Command("sleep", "0.2")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }() // reap, so the pid really goes
	Gone(cmd.Process.Pid, 60*time.Second)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Gone returned but the process had not exited")
	}
}

func TestGoneGivesUpAtTheDeadline(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	Gone(cmd.Process.Pid, 50*time.Millisecond) // returns although sleep still runs
	if err := cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("process should still run after Gone's deadline: %v", err)
	}
}

func TestGoneOfAMissingPid(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	Gone(cmd.Process.Pid, 60*time.Second) // reaped already: returns at once
}
