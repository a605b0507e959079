// Package qmp is a small client for the QEMU Machine Protocol over a unix
// socket: it negotiates capabilities, runs commands one at a time and
// matches replies by id, ignoring asynchronous events (callers poll state
// with query-* commands instead).
package qmp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// Error is a QMP error reply.
type Error struct {
	Command string
	Class   string `json:"class"`
	Desc    string `json:"desc"`
}

func (e *Error) Error() string { return fmt.Sprintf("qmp %s: %s: %s", e.Command, e.Class, e.Desc) }

// Version is qemu's version from the greeting.
type Version struct {
	Major, Minor, Micro int
	Package             string
}

func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d %s", v.Major, v.Minor, v.Micro, v.Package)
}

// Client is one QMP connection. Run is safe for concurrent use; commands
// are sent one at a time.
type Client struct {
	conn    net.Conn
	version Version

	mu      sync.Mutex // serialises Run
	next    int
	replies chan reply
	done    chan struct{} // closed when the reader stops
	readErr error
}

type reply struct {
	ID     string          `json:"id"`
	Return json.RawMessage `json:"return"`
	Error  *Error          `json:"error"`
	Event  string          `json:"event"`
}

// Dial connects to the QMP socket at path, reads the greeting and enters
// command mode. ctx bounds the handshake.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	c, err := handshake(ctx, conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

func handshake(ctx context.Context, conn net.Conn) (*Client, error) {
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	r := bufio.NewReader(conn)
	line, err := r.ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("qmp greeting: %w", err)
	}
	var greet struct {
		QMP struct {
			Version struct {
				Qemu    struct{ Major, Minor, Micro int } `json:"qemu"`
				Package string                            `json:"package"`
			} `json:"version"`
		} `json:"QMP"`
	}
	if err := json.Unmarshal(line, &greet); err != nil {
		return nil, fmt.Errorf("qmp greeting %q: %w", line, err)
	}
	q := greet.QMP.Version
	c := &Client{
		conn:    conn,
		version: Version{q.Qemu.Major, q.Qemu.Minor, q.Qemu.Micro, q.Package},
		replies: make(chan reply),
		done:    make(chan struct{}),
	}
	go c.read(r)
	if err := c.Run(ctx, "qmp_capabilities", nil, nil); err != nil {
		c.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return c, nil
}

// Version is the qemu version the server announced.
func (c *Client) Version() Version { return c.version }

func (c *Client) read(r *bufio.Reader) {
	defer close(c.done)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			c.readErr = err
			return
		}
		var rep reply
		if err := json.Unmarshal(line, &rep); err != nil {
			c.readErr = fmt.Errorf("qmp: bad message %q: %w", line, err)
			return
		}
		if rep.Event != "" {
			continue
		}
		select {
		case c.replies <- rep:
		case <-time.After(5 * time.Second): // nobody waiting (abandoned call)
		}
	}
}

// Run executes command with args (nil or a JSON-marshalable value) and
// decodes its "return" into out (nil: ignored). It fails with *Error on a
// QMP error, or with the connection's error when qemu went away. When ctx
// ends first the connection is closed (qemu's reply could no longer be
// matched reliably) and ctx's error returned.
func (c *Client) Run(ctx context.Context, command string, args, out any) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	id := strconv.Itoa(c.next)
	msg := map[string]any{"execute": command, "id": id}
	if args != nil {
		msg["arguments"] = args
	}
	b, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("qmp %s: %w", command, err)
	}
	for {
		select {
		case rep := <-c.replies:
			if rep.ID != id {
				continue // reply to an abandoned command
			}
			if rep.Error != nil {
				rep.Error.Command = command
				return rep.Error
			}
			if out != nil && len(rep.Return) > 0 {
				if err := json.Unmarshal(rep.Return, out); err != nil {
					return fmt.Errorf("qmp %s: decode reply: %w", command, err)
				}
			}
			return nil
		case <-c.done:
			err := c.readErr
			if err == nil {
				err = net.ErrClosed
			}
			return fmt.Errorf("qmp %s: %w", command, err)
		case <-ctx.Done():
			c.conn.Close()
			return fmt.Errorf("qmp %s: %w", command, ctx.Err())
		}
	}
}

// Close closes the connection.
func (c *Client) Close() error {
	err := c.conn.Close()
	<-c.done
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
