package sandbox

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestExecDefaultsInheritTheInit(t *testing.T) {
	adj := 300
	c := &specs.Spec{
		Process: &specs.Process{Env: []string{"A=1"}, Cwd: "/srv", NoNewPrivileges: true, OOMScoreAdj: &adj,
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 10, Hard: 10}}},
		Annotations: map[string]string{AnnotationUser: "web"},
	}
	got := ExecDefaults(&specs.Process{Args: []string{"sh"}}, c)
	if got.Cwd != "/srv" || len(got.Env) != 1 || !got.NoNewPrivileges || len(got.Rlimits) != 1 || got.User.Username != "web" {
		t.Errorf("exec process %+v does not take the init's defaults", got)
	}
	if got.OOMScoreAdj == nil || *got.OOMScoreAdj != 300 {
		t.Errorf("exec oomScoreAdj = %v, want the init's 300", got.OOMScoreAdj)
	}
	own := -5
	if got := ExecDefaults(&specs.Process{Args: []string{"sh"}, OOMScoreAdj: &own, Cwd: "/"}, c); *got.OOMScoreAdj != -5 || got.Cwd != "/" {
		t.Errorf("an exec's own oomScoreAdj/cwd were replaced: %+v", got)
	}
}
