package manifest

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Diagnostic is one problem found in a revision, named by where it is and what
// it is about. Kind, Namespace and Name are empty when the problem is not
// about an object (a YAML syntax error); Field is empty when it is about the
// object as a whole.
type Diagnostic struct {
	File      string
	Line      int
	Kind      string
	Namespace string
	Name      string
	Field     string
	Message   string
	// Warning marks a problem that does not refuse the revision: a field berth
	// accepts but does not act on.
	Warning bool
}

// String renders the diagnostic the way compilers do, for example
// `deploy/web.yaml:14: Deployment default/web: spec.replicas: Invalid value: -1: must be greater than or equal to 0`.
func (d Diagnostic) String() string {
	var b strings.Builder
	if d.File != "" {
		b.WriteString(d.File)
		if d.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(d.Line))
		}
		b.WriteString(": ")
	}
	if d.Warning {
		b.WriteString("warning: ")
	}
	if d.Kind != "" {
		b.WriteString(d.Kind)
		if id := objectID(d.Namespace, d.Name); id != "" {
			b.WriteByte(' ')
			b.WriteString(id)
		}
		b.WriteString(": ")
	}
	if d.Field != "" {
		b.WriteString(d.Field)
		b.WriteString(": ")
	}
	b.WriteString(d.Message)
	return b.String()
}

// objectID is "namespace/name", or just the name for cluster-scoped objects
// and objects whose namespace is unknown.
func objectID(namespace, name string) string {
	if namespace == "" {
		return name
	}
	return namespace + "/" + name
}

// Errors is every diagnostic of a refused revision: all errors, and the
// warnings found alongside them, sorted by file and line.
type Errors []Diagnostic

// Error lists every diagnostic, one per line.
func (e Errors) Error() string {
	if len(e) == 0 {
		return "no diagnostics"
	}
	lines := make([]string, len(e))
	for i, d := range e {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// ErrorCount is the number of diagnostics that are not warnings.
func (e Errors) ErrorCount() int {
	n := 0
	for _, d := range e {
		if !d.Warning {
			n++
		}
	}
	return n
}

// sortDiagnostics orders by file, then line, keeping discovery order for ties
// so that related messages stay together.
func sortDiagnostics(ds []Diagnostic) {
	slices.SortStableFunc(ds, func(a, b Diagnostic) int {
		return cmp.Or(cmp.Compare(a.File, b.File), cmp.Compare(a.Line, b.Line))
	})
}

// findings collects what validation finds about one object: errors refuse the
// revision, warnings do not. Most come from field.Error values, so messages
// keep Kubernetes' own wording ("Required value", "Unsupported value", ...).
type findings struct {
	issues []issue
}

type issue struct {
	field   string // path from the object root, "" for the object itself
	message string
	warning bool
}

func (f *findings) add(errs ...*field.Error) {
	for _, e := range errs {
		f.issues = append(f.issues, issue{field: e.Field, message: e.ErrorBody()})
	}
}

// addMessage records an error whose wording is not one of field.Error's.
func (f *findings) addMessage(path, message string) {
	f.issues = append(f.issues, issue{field: path, message: message})
}

// warn records a warning about a field berth accepts but does not act on.
func (f *findings) warn(path *field.Path, message string) {
	f.issues = append(f.issues, issue{field: path.String(), message: message, warning: true})
}

// unsupported is the error for a value Kubernetes accepts but berth cannot
// honour. It reads "Unsupported value: X: why".
func unsupported(path *field.Path, value any, why string) *field.Error {
	return &field.Error{Type: field.ErrorTypeNotSupported, Field: path.String(), BadValue: value, Detail: why}
}

// notSupportedByBerth is the error for a field berth refuses whatever its
// value. It reads "Forbidden: not supported by berth: why".
func notSupportedByBerth(path *field.Path, why string) *field.Error {
	return field.Forbidden(path, "not supported by berth: "+why)
}
