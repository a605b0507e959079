// Command puremain is a darwincheck test fixture: a main package without cgo
// in its darwin build, which darwincheck must cross-build.
package main

import "os"

func main() { os.Exit(0) }
