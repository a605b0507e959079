package statemachine

import (
	"fmt"
	"slices"
	"testing"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

var allStates = []lifecycle.State{
	lifecycle.StateCreated, lifecycle.StateRunning, lifecycle.StatePaused,
	lifecycle.StateCheckpointed, lifecycle.StateStopped, lifecycle.StateDeleted,
}

// TestTransitionTable checks lifecycle.CanTransition on every ordered pair
// of states against DESIGN.md's machine: the seed's transitions plus
// stopped→running and created→stopped.
func TestTransitionTable(t *testing.T) {
	legal := map[[2]lifecycle.State]bool{
		{lifecycle.StateCreated, lifecycle.StateRunning}:      true,
		{lifecycle.StateCreated, lifecycle.StateStopped}:      true,
		{lifecycle.StateCreated, lifecycle.StateDeleted}:      true,
		{lifecycle.StateRunning, lifecycle.StatePaused}:       true,
		{lifecycle.StateRunning, lifecycle.StateStopped}:      true,
		{lifecycle.StatePaused, lifecycle.StateRunning}:       true,
		{lifecycle.StatePaused, lifecycle.StateStopped}:       true,
		{lifecycle.StatePaused, lifecycle.StateCheckpointed}:  true,
		{lifecycle.StateCheckpointed, lifecycle.StateRunning}: true,
		{lifecycle.StateCheckpointed, lifecycle.StateDeleted}: true,
		{lifecycle.StateStopped, lifecycle.StateRunning}:      true,
		{lifecycle.StateStopped, lifecycle.StateDeleted}:      true,
	}
	n := 0
	for _, from := range allStates {
		for _, to := range allStates {
			want := legal[[2]lifecycle.State{from, to}]
			if got := lifecycle.CanTransition(from, to); got != want {
				t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want)
			}
			if want {
				n++
			}
		}
	}
	if n != len(legal) {
		t.Fatalf("table has %d legal pairs, counted %d", len(legal), n)
	}
}

// TestOpsOnlyUseLegalTransitions proves that no operation can write a
// transition the contract forbids. Checkpoint from running is the one
// operation that goes through an intermediate state (paused), so its edges
// are checked hop by hop.
func TestOpsOnlyUseLegalTransitions(t *testing.T) {
	for _, op := range Ops {
		for _, from := range op.From {
			if op.To == "" || from == op.To {
				continue
			}
			if op.Via != "" && !lifecycle.CanTransition(from, op.To) {
				if !lifecycle.CanTransition(from, op.Via) || !lifecycle.CanTransition(op.Via, op.To) {
					t.Errorf("op %q goes %s → %s → %s, which CanTransition forbids", op.Name, from, op.Via, op.To)
				}
				continue
			}
			if !lifecycle.CanTransition(from, op.To) {
				t.Errorf("op %q goes %s → %s, which CanTransition forbids", op.Name, from, op.To)
			}
		}
	}
}

// TestCheckEveryOpInEveryState asks every operation in every state: the
// allowed ones pass, every other one is ErrInvalidState with a message
// that names the container, its state and the states that would do.
func TestCheckEveryOpInEveryState(t *testing.T) {
	allowed := map[string][]lifecycle.State{
		"started":       {lifecycle.StateCreated, lifecycle.StateStopped},
		"stopped":       {lifecycle.StateRunning, lifecycle.StatePaused},
		"paused":        {lifecycle.StateRunning},
		"resumed":       {lifecycle.StatePaused},
		"checkpointed":  {lifecycle.StateRunning, lifecycle.StatePaused},
		"restored":      {lifecycle.StateCheckpointed},
		"removed":       {lifecycle.StateCreated, lifecycle.StateStopped, lifecycle.StateCheckpointed},
		"marked exited": {lifecycle.StateRunning, lifecycle.StatePaused},
		"marked failed": {lifecycle.StateCreated, lifecycle.StateStopped},
		"signalled":     {lifecycle.StateRunning, lifecycle.StatePaused},
		"exec'd into":   {lifecycle.StateRunning},
		"attached to":   {lifecycle.StateRunning, lifecycle.StatePaused, lifecycle.StateCreated},
	}
	for _, op := range Ops {
		want, ok := allowed[op.Name]
		if !ok {
			t.Fatalf("op %q missing from the test's table", op.Name)
		}
		for _, from := range allStates {
			t.Run(fmt.Sprintf("%s/%s", op.Name, from), func(t *testing.T) {
				err := Check("web", from, op)
				if slices.Contains(want, from) {
					if err != nil {
						t.Fatalf("Check(web, %s, %s) = %v, want allowed", from, op.Name, err)
					}
					return
				}
				if !errdefs.IsInvalidState(err) {
					t.Fatalf("Check(web, %s, %s) = %v, want ErrInvalidState", from, op.Name, err)
				}
			})
		}
	}
}

func TestMessagesReadPlainly(t *testing.T) {
	cases := []struct {
		from lifecycle.State
		op   Op
		want string
	}{
		{lifecycle.StateStopped, Pause, "container web is stopped; only a running container can be paused"},
		{lifecycle.StateDeleted, Start, "container web is deleted; only a created or stopped container can be started"},
		{lifecycle.StateRunning, Delete, "container web is running; only a created, stopped or checkpointed container can be removed"},
		{lifecycle.StateCreated, Resume, "container web is created; only a paused container can be resumed"},
		{lifecycle.StateStopped, Exec, "container web is stopped; only a running container can be exec'd into"},
	}
	for _, c := range cases {
		err := Check("web", c.from, c.op)
		if err == nil || err.Error() != c.want {
			t.Errorf("Check(web, %s, %s) = %v, want %q", c.from, c.op.Name, err, c.want)
		}
	}
}
