package hostsim

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// run runs a command (in the network namespace at netnsPath unless it is
// empty) and returns its error with the command line and its output.
// nsenter --net switches only the network namespace; `ip netns exec` would
// also remount /sys, which hides the cgroup mounts Podman needs.
func run(ctx context.Context, netnsPath, name string, args ...string) error {
	cmd := command(ctx, netnsPath, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func command(ctx context.Context, netnsPath, name string, args ...string) *exec.Cmd {
	if netnsPath == "" {
		return exec.CommandContext(ctx, name, args...)
	}
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + netnsPath, "--", name}, args...)...)
}

// ignoreMissing turns the errors `ip` and `iptables` give for something that
// is already gone into nil, so teardown steps are idempotent.
func ignoreMissing(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, s := range []string{"Cannot find device", "No such process", "No such file or directory", "does not exist", "Bad rule"} {
		if strings.Contains(msg, s) {
			return nil
		}
	}
	return err
}

// prefixesInUse lists the IPv4 destinations of every route in every table
// of the root namespace, which includes every local address and every
// network a bridge (Podman's podman0, other clusters' bridges) serves.
func prefixesInUse(ctx context.Context) ([]netip.Prefix, error) {
	out, err := exec.CommandContext(ctx, "ip", "-j", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	var routes []struct {
		Dst string `json:"dst"`
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		return nil, fmt.Errorf("list routes: parse `ip -j route`: %w", err)
	}
	var inUse []netip.Prefix
	for _, r := range routes {
		if p, err := netip.ParsePrefix(r.Dst); err == nil {
			inUse = append(inUse, p.Masked())
		} else if a, err := netip.ParseAddr(r.Dst); err == nil {
			inUse = append(inUse, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return inUse, nil
}

// lockFile serialises network selection between clusters created at the
// same time (parallel tests): the winner's bridge route exists before the
// next one looks.
const lockFile = "/run/lock/berth-hostsim.lock"

func lockNetworks() (unlock func(), err error) {
	f, err := os.OpenFile(lockFile, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("hostsim: open lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("hostsim: lock %s: %w", lockFile, err)
	}
	return func() { f.Close() }, nil
}

// pidsInNetns returns the processes whose network namespace is the one
// bound at path.
func pidsInNetns(path string) ([]int, error) {
	var target syscall.Stat_t
	if err := syscall.Stat(path, &target); err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		// Processes that exit meanwhile, or kernel threads, fail: skip them.
		if syscall.Stat("/proc/"+e.Name()+"/ns/net", &st) != nil {
			continue
		}
		if st.Dev == target.Dev && st.Ino == target.Ino {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	dir = filepath.Clean(dir)
	var mounts []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fields := bytes.Fields(sc.Bytes())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountPath(string(fields[4]))
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			mounts = append(mounts, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	return slices.Compact(mounts), nil
}

// unescapeMountPath undoes mountinfo's octal escapes (\040 for a space...).
func unescapeMountPath(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// unmountAll unmounts everything at or below dir. Podman leaves its
// storage's overlay directory bind-mounted on itself after the service
// exits (containers/storage makes it a private mount), and a container that
// was never removed leaves its rootfs and /dev/shm mounts.
func unmountAll(dir string) error {
	mounts, err := mountsUnder(dir)
	if err != nil {
		return err
	}
	var errs []error
	for _, m := range mounts {
		err := syscall.Unmount(m, 0)
		if errors.Is(err, syscall.EBUSY) {
			err = syscall.Unmount(m, syscall.MNT_DETACH)
		}
		if err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}
