package snapshot

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync"
	"testing"
	"time"

	goplugin "github.com/hashicorp/go-plugin"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/mount"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/schema"
)

// These tests cross the real gRPC boundary (go-plugin's in-process test
// connection) with a scripted fake: they are about the adapter seam, not
// about snapshot semantics.

// fake records what reached it and answers what the test scripted.
type fake struct {
	mu    sync.Mutex
	calls []string
	// err, when set, is returned by every method.
	err error

	labels     map[string]string // labels the last Prepare/View/Commit was given
	fieldpaths []string
	filters    []string
	walk       []Info
	walkDone   chan error // receives what the implementation's Walk returned
	applyKey   string
	applyLayer Layer
	applied    []byte
	applyReads int
	applyFail  int   // fail Apply after reading this many bytes, when > 0
	applyErr   error // what the implementation's reader returned, if not io.EOF
}

var testTime = time.Unix(1700000000, 123456789)

var testMounts = []mount.Mount{
	{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=/a:/b", "upperdir=/u", "workdir=/w"}},
	{Type: "bind", Source: "/host", Target: "etc/x", Options: []string{"rbind", "ro"}},
}

func (f *fake) record(call string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf("%s%v", call, args))
	return f.err
}

func (f *fake) setLabels(opts []Opt) error {
	i, err := ApplyOptions(opts)
	if err != nil {
		return err
	}
	f.mu.Lock()
	f.labels = i.Labels
	f.mu.Unlock()
	return nil
}

func (f *fake) Info(context.Context) (plugin.Info, error) {
	return plugin.HostInfo(plugin.LayerSnapshot, "fake", "v0.0.1", CapMountOverlay), nil
}
func (f *fake) ConfigSchema(context.Context) (*schema.Spec, error)       { return &schema.Spec{}, nil }
func (f *fake) Configure(context.Context, plugin.ConfigureRequest) error { return nil }

func (f *fake) Stat(_ context.Context, key string) (Info, error) {
	if err := f.record("Stat", key); err != nil {
		return Info{}, err
	}
	return Info{Kind: KindCommitted, Name: key, Parent: "p", Labels: map[string]string{"a": "b"}, Created: testTime, Updated: testTime.Add(time.Second)}, nil
}

func (f *fake) Update(_ context.Context, info Info, fieldpaths ...string) (Info, error) {
	if err := f.record("Update", info.Name); err != nil {
		return Info{}, err
	}
	f.mu.Lock()
	f.fieldpaths = fieldpaths
	f.mu.Unlock()
	info.Updated = testTime
	return info, nil
}

func (f *fake) Usage(_ context.Context, key string) (Usage, error) {
	if err := f.record("Usage", key); err != nil {
		return Usage{}, err
	}
	return Usage{Size: 1 << 40, Inodes: 12345}, nil
}

func (f *fake) Mounts(_ context.Context, key string) ([]mount.Mount, error) {
	if err := f.record("Mounts", key); err != nil {
		return nil, err
	}
	return testMounts, nil
}

func (f *fake) Prepare(_ context.Context, key, parent string, opts ...Opt) ([]mount.Mount, error) {
	if err := f.record("Prepare", key, parent); err != nil {
		return nil, err
	}
	return testMounts, f.setLabels(opts)
}

func (f *fake) View(_ context.Context, key, parent string, opts ...Opt) ([]mount.Mount, error) {
	if err := f.record("View", key, parent); err != nil {
		return nil, err
	}
	return testMounts[:1], f.setLabels(opts)
}

func (f *fake) Commit(_ context.Context, name, key string, opts ...Opt) error {
	if err := f.record("Commit", name, key); err != nil {
		return err
	}
	return f.setLabels(opts)
}

func (f *fake) Remove(_ context.Context, key string) error { return f.record("Remove", key) }
func (f *fake) Cleanup(context.Context) error              { return f.record("Cleanup") }

func (f *fake) Walk(ctx context.Context, fn WalkFunc, filters ...string) (err error) {
	if f.walkDone != nil {
		defer func() { f.walkDone <- err }()
	}
	if err := f.record("Walk"); err != nil {
		return err
	}
	f.mu.Lock()
	f.filters = filters
	f.mu.Unlock()
	for _, i := range f.walk {
		if err := fn(ctx, i); err != nil {
			return err
		}
	}
	if f.walkDone != nil {
		// A long walk: it ends only when the client cancels, which is what
		// the test checks (a short one could finish before the cancel).
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (f *fake) Apply(_ context.Context, key string, layer Layer, r io.Reader) (ApplyResult, error) {
	if err := f.record("Apply", key); err != nil {
		return ApplyResult{}, err
	}
	var got []byte
	reads := 0
	buf := make([]byte, 1<<20)
	var rerr error
	for {
		n, err := r.Read(buf)
		got = append(got, buf[:n]...)
		reads++
		if f.applyFail > 0 && len(got) >= f.applyFail {
			return ApplyResult{}, errdefs.InvalidArgument("layer %s: diff ID mismatch (got sha256:%x)", layer.Digest, sha256.Sum256(got))
		}
		if err != nil {
			if err != io.EOF {
				rerr = err
			}
			break
		}
	}
	f.mu.Lock()
	f.applyKey, f.applyLayer, f.applied, f.applyReads, f.applyErr = key, layer, got, reads, rerr
	f.mu.Unlock()
	if rerr != nil {
		return ApplyResult{}, rerr
	}
	return ApplyResult{DiffID: fmt.Sprintf("sha256:%x", sha256.Sum256(got)), Size: int64(len(got))}, nil
}

// dial serves f over an in-process gRPC connection and returns the client.
func dial(t *testing.T, f *fake) *Client {
	t.Helper()
	client, _ := goplugin.TestPluginGRPCConn(t, false, map[string]goplugin.Plugin{"snapshot": NewPlugin(f)})
	t.Cleanup(func() { _ = client.Close() })
	raw, err := client.Dispense("snapshot")
	if err != nil {
		t.Fatalf("dispense: %v", err)
	}
	c, ok := raw.(*Client)
	if !ok {
		t.Fatalf("dispensed %T, want *Client", raw)
	}
	return c
}

func TestRoundTrip(t *testing.T) {
	f := &fake{}
	c := dial(t, f)
	ctx := context.Background()

	info, err := c.Stat(ctx, "k1")
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	want := Info{Kind: KindCommitted, Name: "k1", Parent: "p", Labels: map[string]string{"a": "b"}, Created: testTime, Updated: testTime.Add(time.Second)}
	if !infoEqual(info, want) {
		t.Errorf("Stat = %+v, want %+v", info, want)
	}

	upd := Info{Kind: KindActive, Name: "k2", Labels: map[string]string{"x": "y"}}
	got, err := c.Update(ctx, upd, "labels.x", "labels.z")
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	upd.Updated = testTime
	if !infoEqual(got, upd) {
		t.Errorf("Update = %+v, want %+v", got, upd)
	}
	if !reflect.DeepEqual(f.fieldpaths, []string{"labels.x", "labels.z"}) {
		t.Errorf("Update fieldpaths = %v", f.fieldpaths)
	}

	u, err := c.Usage(ctx, "k1")
	if err != nil || u != (Usage{Size: 1 << 40, Inodes: 12345}) {
		t.Errorf("Usage = %+v, %v", u, err)
	}

	ms, err := c.Mounts(ctx, "k1")
	if err != nil || !reflect.DeepEqual(ms, testMounts) {
		t.Errorf("Mounts = %+v, %v; want %+v", ms, err, testMounts)
	}

	ms, err = c.Prepare(ctx, "k3", "k1", WithLabels(map[string]string{"l1": "v1"}), WithLabels(map[string]string{"l2": "v2"}))
	if err != nil || !reflect.DeepEqual(ms, testMounts) {
		t.Errorf("Prepare = %+v, %v", ms, err)
	}
	if want := map[string]string{"l1": "v1", "l2": "v2"}; !reflect.DeepEqual(f.labels, want) {
		t.Errorf("Prepare labels = %v, want %v", f.labels, want)
	}

	ms, err = c.View(ctx, "v1", "k1")
	if err != nil || !reflect.DeepEqual(ms, testMounts[:1]) {
		t.Errorf("View = %+v, %v", ms, err)
	}
	if len(f.labels) != 0 {
		t.Errorf("View without options got labels %v", f.labels)
	}

	if err := c.Commit(ctx, "sha256:chain", "k3", WithLabels(map[string]string{"c": "d"})); err != nil {
		t.Errorf("Commit: %v", err)
	}
	if want := map[string]string{"c": "d"}; !reflect.DeepEqual(f.labels, want) {
		t.Errorf("Commit labels = %v, want %v", f.labels, want)
	}
	if err := c.Remove(ctx, "k3"); err != nil {
		t.Errorf("Remove: %v", err)
	}
	if err := c.Cleanup(ctx); err != nil {
		t.Errorf("Cleanup: %v", err)
	}

	wantCalls := []string{"Stat[k1]", "Update[k2]", "Usage[k1]", "Mounts[k1]", "Prepare[k3 k1]", "View[v1 k1]", "Commit[sha256:chain k3]", "Remove[k3]", "Cleanup[]"}
	if !reflect.DeepEqual(f.calls, wantCalls) {
		t.Errorf("calls = %v\nwant    %v", f.calls, wantCalls)
	}

	pi, err := c.Info(ctx)
	if err != nil || pi.Layer != plugin.LayerSnapshot || pi.Name != "fake" {
		t.Errorf("Info = %+v, %v", pi, err)
	}
}

func TestOptErrorStaysOnClient(t *testing.T) {
	f := &fake{}
	c := dial(t, f)
	bad := func(*Info) error { return errdefs.InvalidArgument("bad label") }
	if _, err := c.Prepare(context.Background(), "k", "", bad); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Prepare with failing Opt = %v, want ErrInvalidArgument", err)
	}
	if len(f.calls) != 0 {
		t.Errorf("plugin was called: %v", f.calls)
	}
}

func infoEqual(a, b Info) bool {
	return a.Kind == b.Kind && a.Name == b.Name && a.Parent == b.Parent &&
		reflect.DeepEqual(a.Labels, b.Labels) && a.Created.Equal(b.Created) && a.Updated.Equal(b.Updated)
}

func TestZeroTimesStayZero(t *testing.T) {
	if got := infoFromPB(infoToPB(Info{Name: "x"})); !got.Created.IsZero() || !got.Updated.IsZero() {
		t.Errorf("zero times came back as %v, %v", got.Created, got.Updated)
	}
}

func TestErrorsKeepTheirKind(t *testing.T) {
	kinds := []struct {
		kind error
		err  error
	}{
		{errdefs.ErrNotFound, errdefs.NotFound("snapshot k not found")},
		{errdefs.ErrAlreadyExists, errdefs.AlreadyExists("snapshot k exists")},
		{errdefs.ErrInvalidState, errdefs.InvalidState("snapshot k has 2 children")},
		{errdefs.ErrNotImplemented, errdefs.NotImplemented("no views")},
		{errdefs.ErrUnavailable, errdefs.Unavailable("disk gone")},
		{errdefs.ErrInvalidArgument, errdefs.InvalidArgument("bad key")},
	}
	ctx := context.Background()
	calls := map[string]func(c *Client) error{
		"Stat":    func(c *Client) error { _, err := c.Stat(ctx, "k"); return err },
		"Update":  func(c *Client) error { _, err := c.Update(ctx, Info{Name: "k"}); return err },
		"Usage":   func(c *Client) error { _, err := c.Usage(ctx, "k"); return err },
		"Mounts":  func(c *Client) error { _, err := c.Mounts(ctx, "k"); return err },
		"Prepare": func(c *Client) error { _, err := c.Prepare(ctx, "k", ""); return err },
		"View":    func(c *Client) error { _, err := c.View(ctx, "k", "p"); return err },
		"Commit":  func(c *Client) error { return c.Commit(ctx, "n", "k") },
		"Remove":  func(c *Client) error { return c.Remove(ctx, "k") },
		"Cleanup": func(c *Client) error { return c.Cleanup(ctx) },
		"Walk":    func(c *Client) error { return c.Walk(ctx, func(context.Context, Info) error { return nil }) },
		"Apply": func(c *Client) error {
			_, err := c.Apply(ctx, "k", Layer{}, bytes.NewReader(make([]byte, 200<<10)))
			return err
		},
	}
	for _, k := range kinds {
		f := &fake{err: k.err}
		c := dial(t, f)
		for name, call := range calls {
			err := call(c)
			if !errors.Is(err, k.kind) {
				t.Errorf("%s with %v: got %v, want kind %v", name, k.kind, err, k.kind)
				continue
			}
			if err.Error() != k.err.Error() {
				t.Errorf("%s: message %q, want %q", name, err.Error(), k.err.Error())
			}
		}
	}
}

func TestWalk(t *testing.T) {
	var infos []Info
	for i := range 500 {
		infos = append(infos, Info{Kind: KindCommitted, Name: fmt.Sprintf("s%03d", i), Labels: map[string]string{"i": fmt.Sprint(i)}, Created: testTime})
	}

	t.Run("all", func(t *testing.T) {
		f := &fake{walk: infos}
		c := dial(t, f)
		var got []Info
		err := c.Walk(context.Background(), func(_ context.Context, i Info) error {
			got = append(got, i)
			return nil
		}, "kind==committed", "labels.i==3")
		if err != nil {
			t.Fatalf("Walk: %v", err)
		}
		if len(got) != len(infos) || !infoEqual(got[42], infos[42]) {
			t.Errorf("Walk visited %d infos (got[42] = %+v)", len(got), got[42])
		}
		if want := []string{"kind==committed", "labels.i==3"}; !reflect.DeepEqual(f.filters, want) {
			t.Errorf("filters = %v, want %v", f.filters, want)
		}
	})

	t.Run("fn error stops the walk", func(t *testing.T) {
		f := &fake{walk: infos, walkDone: make(chan error, 1)}
		c := dial(t, f)
		stop := errors.New("seen enough")
		var got []string
		err := c.Walk(context.Background(), func(_ context.Context, i Info) error {
			got = append(got, i.Name)
			if len(got) == 3 {
				return stop
			}
			return nil
		})
		if err != stop {
			t.Errorf("Walk = %v, want the fn's error %v", err, stop)
		}
		if want := []string{"s000", "s001", "s002"}; !reflect.DeepEqual(got, want) {
			t.Errorf("fn saw %v, want %v", got, want)
		}
		select {
		case implErr := <-f.walkDone:
			if implErr == nil {
				t.Errorf("the plugin's Walk ran to the end; it should have been stopped")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the plugin's Walk did not stop after the client cancelled")
		}
	})
}

func TestApply(t *testing.T) {
	data := make([]byte, 1<<20+12345)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	f := &fake{}
	c := dial(t, f)
	layer := Layer{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: "sha256:aa", DiffID: "sha256:bb", Size: int64(len(data))}
	res, err := c.Apply(context.Background(), "extract-1", layer, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if !bytes.Equal(f.applied, data) {
		t.Fatalf("plugin received %d bytes, not the %d sent", len(f.applied), len(data))
	}
	if f.applyReads < 2 {
		t.Errorf("the blob arrived in %d read(s); want several chunks", f.applyReads)
	}
	if f.applyKey != "extract-1" || f.applyLayer != layer {
		t.Errorf("plugin got key %q layer %+v", f.applyKey, f.applyLayer)
	}
	want := ApplyResult{DiffID: fmt.Sprintf("sha256:%x", sha256.Sum256(data)), Size: int64(len(data))}
	if res != want {
		t.Errorf("Apply = %+v, want %+v", res, want)
	}
}

func TestApplyEmpty(t *testing.T) {
	f := &fake{}
	c := dial(t, f)
	res, err := c.Apply(context.Background(), "k", Layer{Digest: "sha256:e"}, bytes.NewReader(nil))
	if err != nil || res.Size != 0 || len(f.applied) != 0 {
		t.Errorf("Apply of an empty blob = %+v, %v (plugin got %d bytes)", res, err, len(f.applied))
	}
}

func TestApplyPluginFailsMidStream(t *testing.T) {
	f := &fake{applyFail: 300 << 10}
	c := dial(t, f)
	// More than gRPC's flow-control windows, so the client is still sending
	// when the plugin gives up.
	data := make([]byte, 16<<20)
	_, err := c.Apply(context.Background(), "k", Layer{Digest: "sha256:aa"}, bytes.NewReader(data))
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Apply = %v, want ErrInvalidArgument from the plugin", err)
	}
}

// failingReader returns n bytes, then err.
type failingReader struct {
	n   int
	err error
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, r.err
	}
	k := min(len(p), r.n)
	clear(p[:k])
	r.n -= k
	return k, nil
}

func TestApplyReaderFails(t *testing.T) {
	f := &fake{}
	c := dial(t, f)
	readErr := errors.New("registry connection reset")
	_, err := c.Apply(context.Background(), "k", Layer{Digest: "sha256:aa"}, &failingReader{n: 200 << 10, err: readErr})
	if !errors.Is(err, readErr) {
		t.Fatalf("Apply = %v, want the reader's error", err)
	}
	// The plugin must see a failed stream, not a short blob that ends cleanly.
	deadline := time.Now().Add(10 * time.Second)
	for {
		f.mu.Lock()
		done, perr := f.applyKey != "", f.applyErr
		f.mu.Unlock()
		if done {
			if perr == nil {
				t.Errorf("plugin read the truncated blob to a clean EOF")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("plugin's Apply did not finish")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
