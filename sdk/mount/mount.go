// Package mount holds the mount descriptor, the lingua franca between the
// snapshot layer, which describes mounts, and the isolation layer, which
// performs them inside the container (or hands them to a VM).
package mount

import "strings"

// Mount describes one mount(2) call, or for VMs one device or share to
// attach. Snapshotters return descriptors, never mounted paths, which is what
// lets them live out of process.
//
// Types Berth uses:
//   - "overlay": Source "overlay", Options lowerdir=…,upperdir=…,workdir=…
//   - "bind": Source a host directory, Options include "rbind"/"ro"
//   - "block": for VMs, with
//     Source the path of a raw ext4 image and Options {"fstype=ext4"} (and "ro"
//     for views); the VM isolation plugin attaches it as a virtio-blk device
//   - "virtiofs"/"9p": Source a host directory shared into a VM
type Mount struct {
	// Type is the filesystem or attachment type.
	Type string
	// Source is the device, directory or image.
	Source string
	// Target is where to mount, relative to the container's root; empty
	// means the root itself.
	Target string
	// Options are mount options as mount(8) takes them.
	Options []string
}

// ReadOnly reports whether the options contain "ro".
func (m Mount) ReadOnly() bool {
	for _, o := range m.Options {
		if o == "ro" {
			return true
		}
	}
	return false
}

// Option returns the value of option key=value and whether it is present.
func (m Mount) Option(key string) (string, bool) {
	for _, o := range m.Options {
		if v, ok := strings.CutPrefix(o, key+"="); ok {
			return v, true
		}
	}
	return "", false
}
