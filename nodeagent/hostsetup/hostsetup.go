// Package hostsetup carries what a host needs for berth's Podman service:
// the containers.conf the agent's service runs with (embedded here so the
// binary is self-contained) and, beside it, setup.sh, which installs the
// packages and checks the kernel.
package hostsetup

import (
	_ "embed"
	"fmt"
	"os"
	"path/filepath"
)

//go:embed containers.conf
var containersConf string

// ContainersConf returns the project's containers.conf. Why each setting
// exists is explained in the file and at the top of setup.sh.
func ContainersConf() string { return containersConf }

// WriteContainersConf writes containers.conf into dir (created if needed) and
// returns its path, for use as CONTAINERS_CONF. The host's /etc/containers
// is never touched. A non-empty podSubnet becomes the default network's
// subnet: on several hosts each needs its own, so that pods can be routed
// between hosts.
func WriteContainersConf(dir, podSubnet string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("write containers.conf: %w", err)
	}
	conf := containersConf
	if podSubnet != "" {
		conf += fmt.Sprintf("\n[network]\ndefault_subnet = %q\n", podSubnet)
	}
	path := filepath.Join(dir, "containers.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return "", fmt.Errorf("write containers.conf: %w", err)
	}
	return path, nil
}
