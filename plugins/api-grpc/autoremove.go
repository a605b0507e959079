package main

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

// autoRemover removes stopped containers labelled api.LabelAutoRemove: at
// each exit event, and in a sweep when its event subscription (re)starts and
// every sweepEvery, so exits no event reported (found by the lifecycle's
// reconciliation after a crash) are not missed.
type autoRemover struct {
	lc         lifecycle.Manager
	log        hclog.Logger
	sweepEvery time.Duration
}

// run works until ctx is done.
func (a *autoRemover) run(ctx context.Context) {
	every := a.sweepEvery
	if every <= 0 {
		every = 5 * time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for ctx.Err() == nil {
		events, err := a.lc.Events(ctx)
		if err == nil {
			a.sweep(ctx)
		loop:
			for {
				select {
				case e, ok := <-events:
					if !ok {
						break loop
					}
					if e.Kind == lifecycle.EventExit {
						a.removeIfMarked(ctx, e.ContainerID)
					}
				case <-tick.C:
					a.sweep(ctx)
				}
			}
		} else if ctx.Err() == nil {
			a.log.Debug("auto-remove: no event subscription yet", "error", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (a *autoRemover) sweep(ctx context.Context) {
	list, err := a.lc.List(ctx, lifecycle.Filter{All: true, States: []lifecycle.State{lifecycle.StateStopped}, Labels: map[string]string{api.LabelAutoRemove: "true"}})
	if err != nil {
		a.log.Warn("auto-remove: list stopped containers", "error", err)
		return
	}
	for _, c := range list {
		a.removeIfMarked(ctx, c.ID)
	}
}

// removeIfMarked removes container id if it is labelled and stopped.
func (a *autoRemover) removeIfMarked(ctx context.Context, id string) {
	c, err := a.lc.Get(ctx, id)
	if err != nil || c.Config.Labels[api.LabelAutoRemove] != "true" || c.State != lifecycle.StateStopped {
		return
	}
	if err := a.lc.Delete(ctx, id, false); err != nil && !errdefs.IsNotFound(err) {
		a.log.Warn("auto-remove failed", "container_id", id, "error", err)
		return
	}
	if err := lifecycle.RemoveAnonymousVolumes(ctx, a.lc, c); err != nil {
		a.log.Warn("auto-remove: anonymous volumes", "container_id", id, "error", err)
	}
	a.log.Info("auto-removed a stopped container", "container_id", id, "name", c.Name)
}
