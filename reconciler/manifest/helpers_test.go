package manifest

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// Base objects that are valid on their own. Tests derive variants with set.
const (
	baseDeployment = `
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: localhost/web:1
        ports:
        - {name: http, containerPort: 8080}
`
	basePod = `
apiVersion: v1
kind: Pod
metadata:
  name: job
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: localhost/job:1
`
	baseService = `
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {port: 80, targetPort: http}
`
	baseConfigMap = `
apiVersion: v1
kind: ConfigMap
metadata:
  name: cfg
data:
  a.conf: "x"
`
	baseSecret = `
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  password: hunter2
`
)

// edit sets (or, with value "<delete>", removes) the field at a path such as
// `spec.template.spec.containers[0].ports`; value is YAML.
type edit struct{ path, value string }

func set(path, value string) edit { return edit{path, value} }

// variant applies edits to a base manifest and renders it as YAML.
func variant(t testing.TB, base string, edits ...edit) string {
	t.Helper()
	var root any
	if err := yaml.Unmarshal([]byte(base), &root); err != nil {
		t.Fatalf("base manifest: %v", err)
	}
	for _, e := range edits {
		var v any
		del := e.value == "<delete>"
		if !del {
			if err := yaml.Unmarshal([]byte(e.value), &v); err != nil {
				t.Fatalf("edit %s: %v", e.path, err)
			}
		}
		root = setPath(root, parsePath(e.path), v, del)
	}
	out, err := yaml.Marshal(root)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func setPath(node any, steps []pathStep, v any, del bool) any {
	if len(steps) == 0 {
		return v
	}
	s := steps[0]
	if s.index >= 0 {
		list, _ := node.([]any)
		for len(list) <= s.index {
			list = append(list, map[string]any{})
		}
		list[s.index] = setPath(list[s.index], steps[1:], v, del)
		return list
	}
	m, ok := node.(map[string]any)
	if !ok {
		m = map[string]any{}
	}
	if del && len(steps) == 1 {
		delete(m, s.key)
		return m
	}
	m[s.key] = setPath(m[s.key], steps[1:], v, del)
	return m
}

// load runs a Decoder over named YAML files ("name.yaml", text, ...).
func load(t testing.TB, nameAndText ...string) (*Set, Errors) {
	t.Helper()
	var files []File
	for i := 0; i+1 < len(nameAndText); i += 2 {
		files = append(files, File{Path: nameAndText[i], Data: []byte(nameAndText[i+1])})
	}
	set, err := NewDecoder().Load(files)
	if err == nil {
		return set, nil
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Load returned %T, want Errors: %v", err, err)
	}
	if set != nil {
		t.Fatal("Load returned both a Set and an error")
	}
	return nil, errs
}

// want is one expected diagnostic: its field, and a part of its message.
type want struct {
	field, message string
}

// checkDiagnostics asserts that the errors are exactly the wanted ones (in
// any order), each naming file, line, kind, name and field.
func checkDiagnostics(t *testing.T, errs Errors, wants []want, warning bool) {
	t.Helper()
	var got []Diagnostic
	for _, d := range errs {
		if d.Warning == warning {
			got = append(got, d)
		}
	}
	used := make([]bool, len(got))
	for _, w := range wants {
		found := false
		for i, d := range got {
			if !used[i] && d.Field == w.field && strings.Contains(d.Message, w.message) {
				used[i], found = true, true
				if d.File == "" || d.Line <= 0 {
					t.Errorf("diagnostic lacks a position: %s", d)
				}
				if (d.Kind == "" && w.field != "kind") || d.Name == "" {
					t.Errorf("diagnostic lacks its object: %s", d)
				}
				break
			}
		}
		if !found {
			t.Errorf("missing diagnostic: field %q, message containing %q; got:\n%s", w.field, w.message, listDiagnostics(got))
		}
	}
	for i, d := range got {
		if !used[i] {
			t.Errorf("unexpected diagnostic: %s", d)
		}
	}
}

func listDiagnostics(ds []Diagnostic) string {
	var b strings.Builder
	for _, d := range ds {
		fmt.Fprintf(&b, "  %s\n", d)
	}
	return b.String()
}
