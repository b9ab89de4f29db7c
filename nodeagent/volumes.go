package nodeagent

import (
	"fmt"
	"os"
	"path/filepath"
)

// Directory modes for pod volumes on the host. Secrets stay private to root;
// ConfigMaps are readable like the kubelet makes them; an emptyDir is
// writable by any user the container runs as, as in Kubernetes.
const (
	podDirMode       = 0o700
	secretDirMode    = 0o700
	configMapDirMode = 0o755
	emptyDirMode     = 0o777
)

// podDir is where one pod's volumes live: <DataDir>/pods/<uid>.
func (a *Agent) podDir(uid string) string {
	return filepath.Join(a.cfg.DataDir, "pods", uid)
}

// writeVolumes lays out a pod's volumes from scratch under dir, replacing
// whatever an earlier incarnation of the pod left there.
func writeVolumes(dir string, plans []volumePlan) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("clear pod directory: %w", err)
	}
	if err := os.MkdirAll(dir, podDirMode); err != nil {
		return fmt.Errorf("create pod directory: %w", err)
	}
	// MkdirAll leaves an existing parent alone; the pod directory is new.
	if err := os.Chmod(dir, podDirMode); err != nil {
		return fmt.Errorf("pod directory mode: %w", err)
	}
	volRoot := filepath.Join(dir, "volumes")
	if err := mkdirMode(volRoot, podDirMode); err != nil {
		return err
	}
	for _, p := range plans {
		if err := writeVolume(filepath.Join(volRoot, p.Name), p); err != nil {
			return fmt.Errorf("volume %q: %w", p.Name, err)
		}
	}
	return nil
}

func writeVolume(dir string, p volumePlan) error {
	mode := os.FileMode(configMapDirMode)
	switch p.Kind {
	case volumeSecret:
		mode = secretDirMode
	case volumeEmptyDir:
		mode = emptyDirMode
	}
	if err := mkdirMode(dir, mode); err != nil {
		return err
	}
	for _, sub := range p.SubDirs {
		if err := mkdirAllMode(dir, filepath.FromSlash(sub), mode); err != nil {
			return err
		}
	}
	for _, f := range p.Files {
		rel := filepath.FromSlash(f.Path)
		if err := mkdirAllMode(dir, filepath.Dir(rel), mode); err != nil {
			return err
		}
		if err := writeFileMode(filepath.Join(dir, rel), f.Data, f.Mode); err != nil {
			return err
		}
	}
	return nil
}

// mkdirMode creates one directory with exactly mode, whatever the umask.
func mkdirMode(dir string, mode os.FileMode) error {
	if err := os.Mkdir(dir, mode); err != nil && !os.IsExist(err) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	return nil
}

// mkdirAllMode creates rel (and its parents) below root, each with mode.
func mkdirAllMode(root, rel string, mode os.FileMode) error {
	if rel == "." || rel == "" {
		return nil
	}
	if err := mkdirAllMode(root, filepath.Dir(rel), mode); err != nil {
		return err
	}
	return mkdirMode(filepath.Join(root, rel), mode)
}

// writeFileMode writes a file that is never, even while being written,
// readable by group or others unless mode allows it.
func writeFileMode(name string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("chmod %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", name, err)
	}
	return nil
}

// removePodDir deletes a pod's volumes once the pod is gone.
func removePodDir(dir string) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove pod directory: %w", err)
	}
	return nil
}
