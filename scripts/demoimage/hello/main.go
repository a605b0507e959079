// Command hello is the tiny static program in Berth's demo image
// (scripts/demo-image.sh): it says where it runs, so a container started
// from the image shows its own hostname, user and arguments.
package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	host, _ := os.Hostname()
	fmt.Printf("Hello from Berth's demo image: %s/%s, hostname %q, uid %d, pid %d, args %q\n",
		runtime.GOOS, runtime.GOARCH, host, os.Getuid(), os.Getpid(), os.Args[1:])
}
