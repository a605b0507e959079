package main

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

// fakeContainers is the part of a lifecycle Manager the auto-remover uses.
// (The real lifecycle behind it is driven by the CLI's `run -d --rm` test.)
type fakeContainers struct {
	lifecycle.Manager
	mu      sync.Mutex
	byID    map[string]lifecycle.Container
	deleted []string
	events  chan lifecycle.Event
}

func (f *fakeContainers) Events(context.Context) (<-chan lifecycle.Event, error) {
	return f.events, nil
}

func (f *fakeContainers) List(_ context.Context, flt lifecycle.Filter) ([]lifecycle.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []lifecycle.Container
	for _, c := range f.byID {
		if slices.Contains(flt.States, c.State) && c.Config.Labels[api.LabelAutoRemove] == flt.Labels[api.LabelAutoRemove] {
			out = append(out, c)
		}
	}
	return out, nil
}

func (f *fakeContainers) Get(_ context.Context, id string) (lifecycle.Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.byID[id]
	if !ok {
		return c, errdefs.NotFound("no such container: %s", id)
	}
	return c, nil
}

func (f *fakeContainers) Delete(_ context.Context, id string, _ bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.byID, id)
	f.deleted = append(f.deleted, id)
	return nil
}

func (f *fakeContainers) set(id string, st lifecycle.State, marked bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := lifecycle.Container{ID: id, Name: id, State: st}
	if marked {
		c.Config.Labels = map[string]string{api.LabelAutoRemove: "true"}
	}
	f.byID[id] = c
}

func (f *fakeContainers) deletedNow() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(slices.Values(f.deleted))
}

func TestAutoRemoverRemovesOnlyMarkedStoppedContainers(t *testing.T) {
	f := &fakeContainers{byID: map[string]lifecycle.Container{}, events: make(chan lifecycle.Event)}
	f.set("stopped-marked", lifecycle.StateStopped, true) // found by the first sweep
	f.set("stopped-plain", lifecycle.StateStopped, false)
	f.set("running-marked", lifecycle.StateRunning, true)
	f.set("exits-marked", lifecycle.StateRunning, true)
	f.set("found-later", lifecycle.StateRunning, true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		(&autoRemover{lc: f, log: hclog.NewNullLogger(), sweepEvery: 20 * time.Millisecond}).run(ctx)
		close(done)
	}()
	wait := func(want []string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !slices.Equal(f.deletedNow(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("deleted %v; want %v", f.deletedNow(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	wait([]string{"stopped-marked"})
	// An exit event removes a marked container that stopped.
	f.set("exits-marked", lifecycle.StateStopped, true)
	f.events <- lifecycle.Event{Kind: lifecycle.EventExit, ContainerID: "exits-marked"}
	wait([]string{"exits-marked", "stopped-marked"})
	// One that stopped with no event (reconciled after a crash) is found by
	// the periodic sweep.
	f.set("found-later", lifecycle.StateStopped, true)
	wait([]string{"exits-marked", "found-later", "stopped-marked"})
	cancel()
	close(f.events)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the auto-remover did not stop with its context")
	}
	if _, err := f.Get(ctx, "running-marked"); err != nil {
		t.Fatal("a running container was removed")
	}
}
