package sandbox

import specs "github.com/opencontainers/runtime-spec/specs-go"

// AnnotationUser is sdk/spec.AnnotationUser (the user as the image or the
// user wrote it, resolved in the rootfs at start), repeated here so the
// init, the supervisor and the guest agent need not link the SDK.
const AnnotationUser = "org.berth.user"

// ExecDefaults fills what an exec's process leaves unset from the
// container's process c, as docker exec does: capabilities, environment,
// working dir, user (with c's user name annotation), rlimits, the OOM
// score adjustment and no_new_privs (an exec never has fewer restrictions
// than the init).
func ExecDefaults(p *specs.Process, c *specs.Spec) *specs.Process {
	out := *p
	base := c.Process
	if out.Capabilities == nil {
		out.Capabilities = base.Capabilities
	}
	if len(out.Env) == 0 {
		out.Env = base.Env
	}
	if out.Cwd == "" {
		out.Cwd = base.Cwd
	}
	if out.User.UID == 0 && out.User.GID == 0 && out.User.Username == "" && len(out.User.AdditionalGids) == 0 {
		out.User = base.User
		out.User.Username = c.Annotations[AnnotationUser]
	}
	if out.Rlimits == nil {
		out.Rlimits = base.Rlimits
	}
	if out.OOMScoreAdj == nil {
		out.OOMScoreAdj = base.OOMScoreAdj
	}
	if base.NoNewPrivileges {
		out.NoNewPrivileges = true
	}
	return &out
}
