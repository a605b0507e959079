package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// fakeQMP speaks the server side of QMP as qemu does: greeting, then a reply
// per command, with an event slipped in before each reply. The real server
// is exercised by the qemu driver's VM tests.
func fakeQMP(t *testing.T, l net.Listener) {
	c, err := l.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	fmt.Fprintln(c, `{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": "Debian"}, "capabilities": ["oob"]}}`)
	s := bufio.NewScanner(c)
	for s.Scan() {
		var req struct {
			Execute string          `json:"execute"`
			ID      string          `json:"id"`
			Args    json.RawMessage `json:"arguments"`
		}
		json.Unmarshal(s.Bytes(), &req)
		fmt.Fprintln(c, `{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "STOP"}`)
		switch req.Execute {
		case "qmp_capabilities":
			fmt.Fprintf(c, `{"return": {}, "id": %q}`+"\n", req.ID)
		case "query-status":
			fmt.Fprintf(c, `{"return": {"status": "running", "running": true}, "id": %q}`+"\n", req.ID)
		case "echo":
			fmt.Fprintf(c, `{"return": %s, "id": %q}`+"\n", req.Args, req.ID)
		case "hang":
		case "quit":
			return
		default:
			fmt.Fprintf(c, `{"error": {"class": "CommandNotFound", "desc": "The command %s has not been found"}, "id": %q}`+"\n", req.Execute, req.ID)
		}
	}
}

func TestClient(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go fakeQMP(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v := c.Version(); v.Major != 7 || v.Minor != 2 || v.Micro != 22 {
		t.Fatalf("version %+v", v)
	}
	var st struct{ Status string }
	if err := c.Run(ctx, "query-status", nil, &st); err != nil || st.Status != "running" {
		t.Fatalf("query-status: %+v %v", st, err)
	}
	var echo map[string]int
	if err := c.Run(ctx, "echo", map[string]int{"a": 1}, &echo); err != nil || echo["a"] != 1 {
		t.Fatalf("echo: %v %v", echo, err)
	}
	var qe *Error
	if err := c.Run(ctx, "nope", nil, nil); !errors.As(err, &qe) || qe.Class != "CommandNotFound" || qe.Command != "nope" {
		t.Fatalf("error reply: %v", err)
	}
	short, cancel2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel2()
	if err := c.Run(short, "hang", nil, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hang: %v", err)
	}
	if err := c.Run(ctx, "query-status", nil, nil); err == nil {
		t.Fatal("command after an abandoned one succeeded on a closed connection")
	}
}

func TestServerGone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "qmp.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go fakeQMP(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Run(ctx, "quit", nil, nil); err == nil {
		t.Fatal("quit: want the connection's end as an error")
	}
}
