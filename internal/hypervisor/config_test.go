package hypervisor

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/sdk/errdefs"
)

func validConfig(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinux")
	disk := filepath.Join(dir, "disk.img")
	for _, p := range []string{kernel, disk} {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return Config{
		Kernel: kernel, Cmdline: []string{"quiet"}, CPUs: 2, MemoryBytes: 256 << 20,
		Disks:      []Disk{{Path: disk}},
		Shares:     []Share{{Tag: "data", Path: dir}},
		NICs:       []NIC{{TAP: "tap0", MAC: "02:00:00:00:00:01"}},
		ConsoleLog: filepath.Join(dir, "console.log"), RunDir: dir,
	}
}

func TestValidate(t *testing.T) {
	if err := validConfig(t).Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	cases := []struct {
		name, want string
		edit       func(*Config)
	}{
		{"no kernel", "kernel", func(c *Config) { c.Kernel = "" }},
		{"relative kernel", "absolute", func(c *Config) { c.Kernel = "vmlinux" }},
		{"missing kernel", "no such file", func(c *Config) { c.Kernel = "/nonexistent/vmlinux" }},
		{"kernel is a dir", "not a regular file", func(c *Config) { c.Kernel = c.RunDir }},
		{"missing initrd", "initrd", func(c *Config) { c.Initrd = "/nonexistent/initrd" }},
		{"arg with space", "whitespace", func(c *Config) { c.Cmdline = []string{"a b"} }},
		{"zero cpus", "cpus 0", func(c *Config) { c.CPUs = 0 }},
		{"tiny memory", "memory", func(c *Config) { c.MemoryBytes = 32 << 20 }},
		{"odd memory", "whole number of MiB", func(c *Config) { c.MemoryBytes = 256<<20 + 1 }},
		{"disk format", "format \"vmdk\"", func(c *Config) { c.Disks[0].Format = "vmdk" }},
		{"missing disk", "disk 0", func(c *Config) { c.Disks[0].Path = "/nonexistent/disk" }},
		{"bad tag", "tag", func(c *Config) { c.Shares[0].Tag = "a/b" }},
		{"long tag", "tag", func(c *Config) { c.Shares[0].Tag = strings.Repeat("t", 37) }},
		{"dup tag", "used twice", func(c *Config) { c.Shares = append(c.Shares, c.Shares[0]) }},
		{"share not dir", "not a directory", func(c *Config) { c.Shares[0].Path = c.Kernel }},
		{"bad mac", "mac", func(c *Config) { c.NICs[0].MAC = "02:00:00:00:00" }},
		{"multicast mac", "multicast", func(c *Config) { c.NICs[0].MAC = "01:00:00:00:00:01" }},
		{"tap and socket", "want one of them", func(c *Config) { c.NICs[0].Socket = "/run/u.sock" }},
		{"relative socket", "absolute path", func(c *Config) { c.NICs[0].TAP = ""; c.NICs[0].Socket = "u.sock" }},
		{"no console", "console log", func(c *Config) { c.ConsoleLog = "" }},
		{"console dir missing", "console log directory", func(c *Config) { c.ConsoleLog = "/nonexistent/dir/log" }},
		{"no run dir", "run dir", func(c *Config) { c.RunDir = "" }},
		{"long run dir", "longer than", func(c *Config) {
			c.RunDir = filepath.Join(c.RunDir, strings.Repeat("d", 100))
			os.MkdirAll(c.RunDir, 0o755)
		}},
		{"relative memory file", "memory file", func(c *Config) { c.MemoryFile = "ram" }},
		{"memory file is dir", "not a regular file", func(c *Config) { c.MemoryFile = c.RunDir }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig(t)
			tc.edit(&c)
			err := c.Validate()
			if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an invalid-argument error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestKernelCmdline(t *testing.T) {
	got := KernelCmdline([]string{"quiet", "console=hvc0"}, []string{"console=ttyS0", "berth.agent=vport", "quiet"})
	if want := "quiet console=hvc0 berth.agent=vport"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestCheckpointRoundTrip(t *testing.T) {
	dir := t.TempDir()
	p := Platform{Name: "qemu-microvm", Arch: "amd64", Accel: "tcg"}
	cfg := validConfig(t)
	if _, err := ReadCheckpoint(dir); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("empty dir: %v", err)
	}
	ck := NewCheckpoint(p, cfg, "state", "qemu 7.2")
	if err := WriteCheckpoint(dir, ck); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadCheckpoint(dir); err == nil || !strings.Contains(err.Error(), "state file state missing") {
		t.Fatalf("missing state file: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "state"), []byte("s"), 0o600)
	got, err := ReadCheckpoint(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Matches(p, cfg); err != nil {
		t.Fatalf("same config: %v", err)
	}
	other := cfg
	other.Disks = nil
	other.Kernel = "/elsewhere" // paths do not matter
	if err := got.Matches(p, other); err == nil || !strings.Contains(err.Error(), "disk count is 0, saved with 1") {
		t.Fatalf("other disks: %v", err)
	}
	other = cfg
	other.MemoryFile = "/ram"
	if err := got.Matches(p, other); err == nil || !strings.Contains(err.Error(), "memory file") {
		t.Fatalf("memory file: %v", err)
	}
	if err := got.Matches(Platform{Name: "qemu-q35", Arch: "amd64", Accel: "tcg"}, cfg); err == nil {
		t.Fatal("other platform matched")
	}
	os.WriteFile(filepath.Join(dir, CheckpointFile), []byte("{"), 0o600)
	if _, err := ReadCheckpoint(dir); err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Fatalf("malformed: %v", err)
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temp file left: %s", e.Name())
		}
	}
}

func TestDialRetry(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "s.sock")
	go func() {
		time.Sleep(100 * time.Millisecond)
		l, err := net.Listen("unix", path)
		if err != nil {
			return
		}
		defer l.Close()
		c, err := l.Accept()
		if err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var d net.Dialer
	dial := func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "unix", path) }
	c, err := DialRetry(ctx, dial, nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := c.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q %v", buf, err)
	}
	c.Close()

	short, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := DialRetry(short, func(context.Context) (net.Conn, error) { return nil, errors.New("nope") }, nil); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("deadline: %v", err)
	}
	stop := errors.New("gone")
	if _, err := DialRetry(ctx, func(context.Context) (net.Conn, error) { return nil, stop }, func(e error) bool { return e == stop }); err != stop {
		t.Fatalf("stop: %v", err)
	}
}

func TestValidateVZ(t *testing.T) {
	c := validConfig(t)
	c.NICs[0].TAP = ""
	if err := ValidateVZ(c); err != nil {
		t.Fatalf("valid vz config: %v", err)
	}
	for name, tc := range map[string]struct {
		edit func(*Config)
		kind error
		want string
	}{
		"qcow2":       {func(c *Config) { c.Disks[0].Format = "qcow2" }, errdefs.ErrInvalidArgument, "raw images only"},
		"tap":         {func(c *Config) { c.NICs[0].TAP = "tap0" }, errdefs.ErrInvalidArgument, "NAT"},
		"memory file": {func(c *Config) { c.MemoryFile = filepath.Join(c.RunDir, "ram") }, errdefs.ErrNotImplemented, "memory file"},
		"base rules":  {func(c *Config) { c.CPUs = 0 }, errdefs.ErrInvalidArgument, "cpus"},
	} {
		c := validConfig(t)
		c.NICs[0].TAP = ""
		tc.edit(&c)
		if err := ValidateVZ(c); !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	if p := VZPlatform("arm64"); p.Name != "vz" || KernelCmdline(nil, p.KernelArgs) != "console=hvc0 berth.agent=vsock" {
		t.Errorf("platform %+v", p)
	}
}
