// Package vz is the macOS hypervisor.Driver on Apple's Virtualization.framework
// (github.com/Code-Hex/vz/v3). It is a thin adapter: validation, kernel
// command line and checkpoint description live in package hypervisor and
// are tested on Linux; this package only maps them onto vz calls.
//
// The VM runs inside the calling process and dies with it. That process
// must be codesigned with the com.apple.security.virtualization entitlement
// (codesign --entitlements … -s -), or every configuration is invalid.
//
// Save and Restore need macOS 14 on Apple silicon; elsewhere they return
// errdefs.ErrNotImplemented.
package vz
