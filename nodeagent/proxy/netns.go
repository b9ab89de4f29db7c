package proxy

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// inNetNS runs f on an OS thread switched into the network namespace at
// path ("" runs f as is). Processes f starts (iptables, iptables-restore),
// sockets it opens and /proc/sys/net files it writes all belong to that
// namespace, because each of them takes the namespace of the calling
// thread.
func inNetNS(path string, f func() error) error {
	if path == "" {
		return f()
	}
	target, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open network namespace: %w", err)
	}
	defer target.Close()
	runtime.LockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own network namespace: %w", err)
	}
	defer self.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter network namespace %s: %w", path, err)
	}
	defer func() {
		// A thread that cannot go back stays locked: the runtime then ends
		// it with this goroutine instead of reusing it elsewhere.
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
	}()
	return f()
}
