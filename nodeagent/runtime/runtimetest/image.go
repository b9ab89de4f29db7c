package runtimetest

import (
	"os"
	"strconv"
	"strings"

	"berth.dev/berth/nodeagent/runtime"
)

// The suite's image is the example app (examples/hello/app) or anything
// honouring the same contract:
//
//   - its entrypoint is Binary; with no arguments it serves HTTP, prints a
//     line containing "serving" to its output, and exits 0 on SIGTERM;
//   - Binary getenv NAME prints env NAME (exit 1 when unset);
//   - Binary cat PATH prints a file; Binary exit CODE exits with CODE;
//   - Binary memlimit prints the cgroup memory limit in bytes;
//   - Binary hang ignores SIGTERM and runs until killed.
const Binary = "/hello"

// ImageProgram emulates the suite's image for runtimes that run nothing, so
// the fake passes the same suite as Podman. It satisfies fake.Program.
type ImageProgram struct{}

// Start emulates the container's main process starting.
func (ImageProgram) Start(c runtime.ContainerSpec) (exits bool, exitCode int, output []byte) {
	args := c.Args
	if len(args) == 0 {
		return false, 0, []byte("level=INFO msg=serving addr=[::]:8080\n")
	}
	if args[0] == "hang" {
		return false, 0, nil
	}
	code, out := tool(c, args)
	return true, code, out
}

// Stop emulates SIGTERM followed, after the grace period, by SIGKILL.
func (ImageProgram) Stop(c runtime.ContainerSpec) int {
	if len(c.Args) > 0 && c.Args[0] == "hang" {
		return 137 // 128 + SIGKILL
	}
	return 0
}

// Exec emulates the image's tools.
func (ImageProgram) Exec(c runtime.ContainerSpec, cmd []string) (int, []byte) {
	if len(cmd) == 0 || cmd[0] != Binary {
		return 127, []byte("exec: not found\n")
	}
	return tool(c, cmd[1:])
}

func tool(c runtime.ContainerSpec, args []string) (int, []byte) {
	if len(args) == 0 {
		return 2, []byte("usage\n")
	}
	arg := func() string {
		if len(args) > 1 {
			return args[1]
		}
		return ""
	}
	switch args[0] {
	case "getenv":
		v, ok := c.Env[arg()]
		if !ok {
			return 1, []byte(arg() + " is not set\n")
		}
		return 0, []byte(v)
	case "cat":
		path := arg()
		for _, m := range c.Mounts {
			rest, ok := strings.CutPrefix(path, m.Destination)
			if ok && (rest == "" || strings.HasPrefix(rest, "/")) {
				b, err := os.ReadFile(m.Source + rest)
				if err != nil {
					return 1, []byte(err.Error() + "\n")
				}
				return 0, b
			}
		}
		return 1, []byte("open " + path + ": no such file or directory\n")
	case "exit":
		code, err := strconv.Atoi(arg())
		if err != nil {
			return 2, []byte(err.Error() + "\n")
		}
		return code, nil
	case "memlimit":
		if c.MemoryLimit > 0 {
			return 0, []byte(strconv.FormatInt(c.MemoryLimit, 10))
		}
		return 0, []byte("max")
	case "check":
		return 0, nil
	default:
		return 2, []byte("unknown command\n")
	}
}
