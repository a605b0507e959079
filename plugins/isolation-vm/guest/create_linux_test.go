//go:build linux

package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/hypervisor"
	"github.com/berth-dev/berth/internal/vmagent"
	"github.com/berth-dev/berth/sdk/isolation"
)

// TestVMCreatePath boots one VM and runs several containers in it one
// after another (create, start, output, exit, delete), each with Docker's
// defaults (namespaces, caps, seccomp, masked paths): the container start
// path inside the guest, with the agent's prestarted init and cold, both
// with the default seccomp profile precompiled by the agent. It logs the agent's boot and create phase timings
// from the console (what bench vm-run's floor is made of) and checks each
// container really ran isolated: its own PID namespace (PID 1), its own
// hostname, seccomp in filter mode and the capability set of the spec.
func TestVMCreatePath(t *testing.T) {
	vm := bootVM(t, vmOptions{machine: "q35", disks: []hypervisor.Disk{{Path: rootfsDisk(t)}}})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	c := vm.connect(ctx)
	time.Sleep(2 * time.Second) // the agent prestarts an init in the background
	defer c.Close()
	// Even ones have a hostname and take the agent's prestarted init; odd
	// ones have none (the guest's is "berth") and start theirs cold.
	for i := 0; i < 6; i++ {
		id := fmt.Sprintf("c%d", i)
		s := newVMSpec(t, id, "sh", "-c", "echo pid=$$; hostname; grep -E '^(Seccomp|CapEff):' /proc/self/status")
		hostname := "host-" + id
		if i%2 == 1 {
			hostname = "berth"
		}
		s.Hostname = strings.TrimPrefix(hostname, "berth")
		began := time.Now()
		if _, err := c.CreateContainer(ctx, vmagent.CreateRequest{ID: id, Spec: s,
			Rootfs: vmagent.Rootfs{Source: "/dev/vda", Type: "ext4", Options: []string{"ro", "format=raw"}}}); err != nil {
			t.Fatalf("CreateContainer %s: %v\n%s", id, err, vm.console())
		}
		created := time.Since(began)
		var out syncBuf
		attached := make(chan error, 1)
		go func() { attached <- c.Attach(ctx, id, "", isolation.Streams{Stdout: &out, Stderr: &out}) }()
		if _, err := c.Start(ctx, id); err != nil {
			t.Fatalf("Start %s: %v\n%s", id, err, vm.console())
		}
		e, err := c.Wait(ctx, id, "")
		if err != nil || e.Code != 0 {
			t.Fatalf("Wait %s = %+v, %v\n%s", id, e, err, out.String())
		}
		select {
		case err := <-attached:
			if err != nil {
				t.Errorf("attach %s: %v", id, err)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("the attach to %s did not end after its exit", id)
		}
		got := out.String()
		// Docker's 14 default capabilities.
		for _, want := range []string{"pid=1\n", hostname + "\n", "Seccomp:\t2\n", "CapEff:\t00000000a80425fb\n"} {
			if !strings.Contains(got, want) {
				t.Errorf("container %s output %q lacks %q", id, got, want)
			}
		}
		if _, err := c.Delete(ctx, id); err != nil {
			t.Fatalf("Delete %s: %v", id, err)
		}
		t.Logf("container %s: CreateContainer answered in %v", id, created.Round(time.Millisecond))
	}
	// The mechanisms engaged: the prestarted init for the even ones, the
	// default seccomp profile precompiled for all.
	console := vm.console()
	for i := 0; i < 6; i++ {
		want := fmt.Sprintf("container_id=c%d .*prestarted=%v seccomp_compiled=true", i, i%2 == 0)
		if !regexp.MustCompile(want).MatchString(console) {
			t.Errorf("console lacks %q", want)
		}
	}
	// The agent's own timings (boot steps, each create's phases).
	re := regexp.MustCompile(`(boot steps|modules loaded|guest ready|serving the host|container created|init phases|load module|module dep).*`)
	for _, l := range strings.Split(console, "\n") {
		if m := re.FindString(l); m != "" {
			t.Logf("guest: %s", m)
		}
	}
}
