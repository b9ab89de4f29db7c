package nodeagent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"berth.dev/berth/api"
)

// Files in DataDir. Both hold values from Secrets (the assignment) or may
// (restart records), so they are written 0600.
const (
	stateFile      = "agent-state.json"
	assignmentFile = "assignment.json"
)

// savedState is the state file: restart records by pod UID and container.
type savedState struct {
	Containers map[string]map[string]*containerRecord `json:"containers"`
}

// loadState restores restart records and the last assignment, so a
// restarted agent neither resets restart counts nor needs the control plane
// to keep its pods running.
func (a *Agent) loadState() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var errs []error
	var st savedState
	if err := readJSON(filepath.Join(a.cfg.DataDir, stateFile), &st); err != nil {
		errs = append(errs, err)
	}
	for uid, byName := range st.Containers {
		for name, rec := range byName {
			if rec != nil {
				a.records[recordKey{UID: uid, Container: name}] = rec
			}
		}
	}
	var asg api.Assignment
	switch err := readJSON(filepath.Join(a.cfg.DataDir, assignmentFile), &asg); {
	case err != nil:
		errs = append(errs, err)
	case asg.Node == a.cfg.NodeName:
		a.assignment = &asg
	}
	return errors.Join(errs...)
}

// readJSON decodes name into v; a missing file leaves v alone.
func readJSON(name string, v any) error {
	b, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// saveStateLocked writes the restart records if they changed.
func (a *Agent) saveStateLocked() error {
	if !a.stateDirty {
		return nil
	}
	st := savedState{Containers: map[string]map[string]*containerRecord{}}
	for k, rec := range a.records {
		if st.Containers[k.UID] == nil {
			st.Containers[k.UID] = map[string]*containerRecord{}
		}
		st.Containers[k.UID][k.Container] = rec
	}
	if err := writeJSON(filepath.Join(a.cfg.DataDir, stateFile), st); err != nil {
		return err
	}
	a.stateDirty = false
	return nil
}

func (a *Agent) saveAssignmentLocked() error {
	return writeJSON(filepath.Join(a.cfg.DataDir, assignmentFile), a.assignment)
}

// writeJSON replaces name atomically with v, readable only by its owner.
func writeJSON(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", filepath.Base(name), err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(name), err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", filepath.Base(name), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(name), err)
	}
	if err := os.Rename(tmp.Name(), name); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(name), err)
	}
	return nil
}
