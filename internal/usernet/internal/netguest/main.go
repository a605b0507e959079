//go:build linux

// Command netguest is the /init of usernet's VM tests and benchmarks
// (built static by them, never shipped). From the kernel command line:
//
//	netguest.mac=M netguest.ip=A/N netguest.gw=G   configure the NIC with MAC M
//	netguest.hostport=P    GET http://G:P/ with busybox wget (the host's loopback through the gateway)
//	netguest.names=a,b     resolve each name through G's DNS
//
// It runs busybox httpd on :80 (/www/index.html = "hello from the vm"), a
// sink on :5002 (reads to EOF, answers "got N"), and a control port :5003
// taking "send HOST:PORT MIB" (dials, sends MIB MiB, waits for the peer
// to close, answers "sent N"). It prints "netguest: <what> <result>" lines
// on the console and "netguest: ready" when the checks are done.
package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func logf(format string, args ...any) { fmt.Fprintf(os.Stdout, "netguest: "+format+"\n", args...) }

func main() {
	for _, m := range []struct{ dir, fs string }{{"/dev", "devtmpfs"}, {"/proc", "proc"}, {"/sys", "sysfs"}} {
		os.MkdirAll(m.dir, 0o755)
		if err := unix.Mount(m.fs, m.dir, m.fs, 0, ""); err != nil && err != unix.EBUSY {
			logf("mount %s: %v", m.dir, err)
		}
	}
	loadModules()
	args := cmdline()
	if err := configure(args); err != nil {
		logf("configure: error %v", err)
		hang()
	}
	os.MkdirAll("/www", 0o755)
	os.WriteFile("/www/index.html", []byte("hello from the vm"), 0o644)
	httpd := exec.Command("/bin/busybox", "httpd", "-f", "-p", "80", "-h", "/www")
	httpd.Stdout, httpd.Stderr = os.Stdout, os.Stdout
	if err := httpd.Start(); err != nil {
		logf("httpd: error %v", err)
	}
	go serve(":5002", sinkConn)
	go serve(":5003", controlConn)
	gw := args["netguest.gw"]
	if p := args["netguest.hostport"]; p != "" {
		// busybox wget through the gateway: the host's 127.0.0.1:P.
		var out []byte
		var err error
		for i := 0; i < 50; i++ {
			out, err = exec.Command("/bin/busybox", "wget", "-q", "-O", "-", "http://"+net.JoinHostPort(gw, p)+"/").CombinedOutput()
			if err == nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		logf("hostnat %q %v", strings.TrimSpace(string(out)), err)
	}
	if names := args["netguest.names"]; names != "" {
		for _, n := range strings.Split(names, ",") {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			addrs, err := net.DefaultResolver.LookupHost(ctx, n)
			cancel()
			sort.Strings(addrs)
			logf("dns %s %s %v", n, strings.Join(addrs, ","), err)
		}
	}
	logf("ready")
	hang()
}

func hang() {
	for {
		time.Sleep(time.Hour)
	}
}

func cmdline() map[string]string {
	b, _ := os.ReadFile("/proc/cmdline")
	out := map[string]string{}
	for _, f := range strings.Fields(string(b)) {
		if k, v, ok := strings.Cut(f, "="); ok && strings.HasPrefix(k, "netguest.") {
			out[k] = v
		}
	}
	return out
}

func loadModules() {
	mods, _ := filepath.Glob("/modules/*.ko")
	sort.Strings(mods)
	for _, p := range mods {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && err != unix.EEXIST {
			logf("module %s: %v", p, err)
		}
		f.Close()
	}
}

// configure brings lo and the NIC with netguest.mac up, with the address,
// default route and resolv.conf (nameserver = the gateway).
func configure(args map[string]string) error {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer h.Close()
	if lo, err := h.LinkByName("lo"); err == nil {
		h.LinkSetUp(lo)
	}
	mac, err := net.ParseMAC(args["netguest.mac"])
	if err != nil {
		return fmt.Errorf("netguest.mac: %w", err)
	}
	var nic netlink.Link
	for deadline := time.Now().Add(30 * time.Second); nic == nil; {
		links, _ := h.LinkList()
		for _, l := range links {
			if bytes.Equal(l.Attrs().HardwareAddr, mac) {
				nic = l
			}
		}
		if nic == nil {
			if time.Now().After(deadline) {
				return fmt.Errorf("no NIC with mac %s", mac)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	addr, err := netlink.ParseAddr(args["netguest.ip"])
	if err != nil {
		return fmt.Errorf("netguest.ip: %w", err)
	}
	if err := h.AddrAdd(nic, addr); err != nil {
		return err
	}
	if err := h.LinkSetUp(nic); err != nil {
		return err
	}
	gw := net.ParseIP(args["netguest.gw"])
	if err := h.RouteAdd(&netlink.Route{LinkIndex: nic.Attrs().Index, Gw: gw}); err != nil {
		return fmt.Errorf("default route via %s: %w", gw, err)
	}
	os.MkdirAll("/etc", 0o755)
	if err := os.WriteFile("/etc/resolv.conf", []byte("nameserver "+gw.String()+"\n"), 0o644); err != nil {
		return err
	}
	logf("configured %s %s via %s", nic.Attrs().Name, addr, gw)
	return nil
}

func serve(addr string, handle func(net.Conn)) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		logf("listen %s: error %v", addr, err)
		return
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			handle(c)
		}()
	}
}

// sinkConn reads to EOF and answers how much it got.
func sinkConn(c net.Conn) {
	n, err := io.Copy(io.Discard, c)
	fmt.Fprintf(c, "got %d %v\n", n, err)
}

// controlConn runs one "send HOST:PORT MIB" and answers "sent N <err>".
func controlConn(c net.Conn) {
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return
	}
	var addr string
	var mib int64
	if _, err := fmt.Sscanf(line, "send %s %d", &addr, &mib); err != nil {
		fmt.Fprintf(c, "error %v\n", err)
		return
	}
	out, err := net.Dial("tcp", addr)
	if err != nil {
		fmt.Fprintf(c, "sent 0 %v\n", err)
		return
	}
	defer out.Close()
	n, err := io.CopyN(out, zero{}, mib<<20)
	out.(*net.TCPConn).CloseWrite()
	io.Copy(io.Discard, out) // the host closes when it has all
	fmt.Fprintf(c, "sent %d %v\n", n, err)
}

type zero struct{}

func (zero) Read(p []byte) (int, error) { clear(p); return len(p), nil }
