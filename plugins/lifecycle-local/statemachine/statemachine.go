// Package statemachine names the operations a user asks of a container and
// checks each against the lifecycle state machine (lifecycle.CanTransition),
// so a refused request comes back as errdefs.ErrInvalidState with a message
// a user can act on: "container web is stopped; only a running container
// can be paused".
//
// An Op lists the states it may start from and the state it leads to; every
// (from, to) pair of every Op is a legal transition of lifecycle's machine
// (the package's tests prove it), so lifecycle-local never writes a
// transition the contract forbids.
package statemachine

import (
	"fmt"
	"slices"
	"strings"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

// Op is an operation on a container.
type Op struct {
	// Name is the verb as the message uses it ("paused", "started").
	Name string
	// From are the states the operation may be asked in.
	From []lifecycle.State
	// To is the state it leads to; "" for operations that change no state
	// (kill, exec).
	To lifecycle.State
	// Via is the state a container goes through on its way to To when it
	// cannot go there directly (checkpoint of a running container goes
	// through paused).
	Via lifecycle.State
}

// The operations lifecycle-local performs.
var (
	Start = Op{Name: "started", From: []lifecycle.State{lifecycle.StateCreated, lifecycle.StateStopped}, To: lifecycle.StateRunning}
	// Stop is what the user asks; a created or stopped container is left as
	// it is (Docker's stop of a stopped container succeeds).
	Stop       = Op{Name: "stopped", From: []lifecycle.State{lifecycle.StateRunning, lifecycle.StatePaused}, To: lifecycle.StateStopped}
	Pause      = Op{Name: "paused", From: []lifecycle.State{lifecycle.StateRunning}, To: lifecycle.StatePaused}
	Resume     = Op{Name: "resumed", From: []lifecycle.State{lifecycle.StatePaused}, To: lifecycle.StateRunning}
	Checkpoint = Op{Name: "checkpointed", From: []lifecycle.State{lifecycle.StateRunning, lifecycle.StatePaused}, To: lifecycle.StateCheckpointed, Via: lifecycle.StatePaused}
	Restore    = Op{Name: "restored", From: []lifecycle.State{lifecycle.StateCheckpointed}, To: lifecycle.StateRunning}
	// Delete without force; with force a running or paused container is
	// stopped first.
	Delete = Op{Name: "removed", From: []lifecycle.State{lifecycle.StateCreated, lifecycle.StateStopped, lifecycle.StateCheckpointed}, To: lifecycle.StateDeleted}
	// Exit is the init process ending (or being found gone).
	Exit = Op{Name: "marked exited", From: []lifecycle.State{lifecycle.StateRunning, lifecycle.StatePaused}, To: lifecycle.StateStopped}
	// StartFailed records a start that never ran the process.
	StartFailed = Op{Name: "marked failed", From: []lifecycle.State{lifecycle.StateCreated, lifecycle.StateStopped}, To: lifecycle.StateStopped}
	// Kill, Exec and Attach need a live process and change no state.
	Kill   = Op{Name: "signalled", From: []lifecycle.State{lifecycle.StateRunning, lifecycle.StatePaused}}
	Exec   = Op{Name: "exec'd into", From: []lifecycle.State{lifecycle.StateRunning}}
	Attach = Op{Name: "attached to", From: []lifecycle.State{lifecycle.StateRunning, lifecycle.StatePaused, lifecycle.StateCreated}}
)

// Ops lists every operation, for tests and documentation.
var Ops = []Op{Start, Stop, Pause, Resume, Checkpoint, Restore, Delete, Exit, StartFailed, Kill, Exec, Attach}

// Allowed reports whether op may be asked of a container in state from.
func (op Op) Allowed(from lifecycle.State) bool {
	if !slices.Contains(op.From, from) {
		return false
	}
	if op.To == "" || from == op.To || lifecycle.CanTransition(from, op.To) {
		return true
	}
	return op.Via != "" && lifecycle.CanTransition(from, op.Via) && lifecycle.CanTransition(op.Via, op.To)
}

// Check returns nil when op may be asked of container name in state from,
// else an errdefs.ErrInvalidState error saying which states would allow it.
func Check(name string, from lifecycle.State, op Op) error {
	if op.Allowed(from) {
		return nil
	}
	return errdefs.InvalidState("container %s is %s; only %s container can be %s", name, from, article(op.From), op.Name)
}

// article renders states as "a running", "a created or stopped", "a
// running or paused".
func article(states []lifecycle.State) string {
	names := make([]string, len(states))
	for i, s := range states {
		names[i] = string(s)
	}
	var list string
	switch len(names) {
	case 0:
		return "no"
	case 1:
		list = names[0]
	default:
		list = strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	}
	a := "a"
	if strings.ContainsRune("aeiou", rune(list[0])) {
		a = "an"
	}
	return fmt.Sprintf("%s %s", a, list)
}
