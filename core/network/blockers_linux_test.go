package network

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/hashicorp/go-hclog"
	"github.com/vishvananda/netns"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestForwardBlockersWarning: a real nft table with a forward chain of
// policy drop (as Docker leaves iptables-nft) makes New warn once, naming
// the chain and what to do. The table lives in a network namespace of the
// test's own: on the host it would drop every forwarded packet of tests
// running meanwhile. Root only.
func TestForwardBlockersWarning(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: nftables in a network namespace (CI runs as root)")
	}
	type result struct {
		log      string
		blockers []string
		table    string
		err      error
	}
	ch := make(chan result, 1)
	root := t.TempDir()
	go func() {
		// The thread enters a namespace of its own and is never unlocked:
		// it ends with the goroutine, and the namespace with it.
		runtime.LockOSThread()
		var r result
		defer func() { ch <- r }()
		ns, err := netns.New()
		if err != nil {
			r.err = err
			return
		}
		defer ns.Close()
		c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
		if err != nil {
			r.err = err
			return
		}
		r.table = fmt.Sprintf("berth-blocker-%d", os.Getpid())
		tb := c.AddTable(&nftables.Table{Name: r.table, Family: nftables.TableFamilyIPv4})
		drop := nftables.ChainPolicyDrop
		c.AddChain(&nftables.Chain{Name: "FORWARD", Table: tb, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward,
			Priority: nftables.ChainPriorityFilter, Policy: &drop})
		if r.err = c.Flush(); r.err != nil {
			return
		}
		defer func() {
			c.DelTable(tb)
			if err := c.Flush(); err != nil && r.err == nil {
				r.err = fmt.Errorf("remove the test table: %w", err)
			}
		}()
		var buf syncBuffer
		s, err := New(context.Background(), Options{Root: root, StoreTimeout: 10 * time.Second, Datapath: Kernel{},
			Logger: hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Info})})
		if err != nil {
			r.err = err
			return
		}
		r.blockers = s.ForwardBlockers()
		r.err = s.Close()
		r.log = buf.String()
	}()
	var r result
	select {
	case r = <-ch:
	case <-time.After(120 * time.Second):
		t.Fatal("New in the test namespace did not return")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	chain := "ip " + r.table + " FORWARD"
	if len(r.blockers) != 1 || r.blockers[0] != chain {
		t.Errorf("ForwardBlockers() = %v, want [%s]", r.blockers, chain)
	}
	if n := strings.Count(r.log, "[WARN]"); n != 1 || !strings.Contains(r.log, "chains=\""+chain+"\"") ||
		!strings.Contains(r.log, "iptables -I FORWARD -i berth0 -j ACCEPT") {
		t.Errorf("want one warning naming %s and what to do; log:\n%s", chain, r.log)
	}
}
