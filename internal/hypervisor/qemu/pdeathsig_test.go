package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/hypervisor"
)

// helperEnv carries a JSON hypervisor.Config to a re-executed test binary
// that starts the VM, prints qemu's pid and waits to be killed.
const helperEnv = "BERTH_HV_TEST_HELPER"

func startHelper() {
	var cfg hypervisor.Config
	if err := json.Unmarshal([]byte(os.Getenv(helperEnv)), &cfg); err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	d, err := New(Options{Accel: "tcg"})
	if err == nil {
		var m hypervisor.Machine
		if m, err = d.Start(context.Background(), cfg); err == nil {
			fmt.Println("pid", m.Pid())
			select {}
		}
	}
	fmt.Println("error", err)
	os.Exit(2)
}

// TestQemuDiesWithCaller: when the process that started qemu is SIGKILLed
// (no chance to clean up), the kernel kills qemu too (Pdeathsig). Root only.
func TestQemuDiesWithCaller(t *testing.T) {
	a := bootAssets(t)
	cfg := testConfig(t, a)
	b, _ := json.Marshal(cfg)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(b))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "pid ")))
	if err != nil {
		t.Fatalf("helper said %q", line)
	}
	if !alive(pid) {
		t.Fatalf("qemu %d not running before the kill", pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			exec.Command("kill", "-9", strconv.Itoa(pid)).Run()
			t.Fatalf("qemu %d outlived its caller", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] != 'Z'
}
