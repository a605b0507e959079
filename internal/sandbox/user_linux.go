package sandbox

import (
	"fmt"

	"github.com/moby/sys/user"
)

// lookupUser resolves name ("nginx", "1000", "web:staff") against the given
// passwd and group files; an empty name keeps defaults. Additional groups
// come from /etc/group, as Docker does; defaults' Groups are kept too.
func lookupUser(name string, defaults User, passwdPath, groupPath string) (User, error) {
	if name == "" {
		return defaults, nil
	}
	eu, err := user.GetExecUserPath(name, &user.ExecUser{Uid: defaults.UID, Gid: defaults.GID, Home: "/"}, passwdPath, groupPath)
	if err != nil {
		return User{}, fmt.Errorf("user %q: %w (looked in the container's /etc/passwd and /etc/group)", name, err)
	}
	groups := append(eu.Sgids, defaults.Groups...)
	return User{UID: eu.Uid, GID: eu.Gid, Groups: groups, Home: eu.Home}, nil
}
