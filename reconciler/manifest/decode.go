package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// kindInfo describes a kind berth accepts.
type kindInfo struct {
	apiVersion string
	namespaced bool
	new        func() any
}

// kinds is every kind berth accepts, with the one apiVersion it accepts it in.
var kinds = map[string]kindInfo{
	"Namespace":  {"v1", false, func() any { return new(corev1.Namespace) }},
	"Pod":        {"v1", true, func() any { return new(corev1.Pod) }},
	"ConfigMap":  {"v1", true, func() any { return new(corev1.ConfigMap) }},
	"Secret":     {"v1", true, func() any { return new(corev1.Secret) }},
	"Service":    {"v1", true, func() any { return new(corev1.Service) }},
	"Deployment": {"apps/v1", true, func() any { return new(appsv1.Deployment) }},
}

// kindHints completes the "not supported" message for kinds users commonly
// bring, with what to do instead.
var kindHints = map[string]string{
	"Kustomization": "berth reads plain manifests: commit the output of `kustomize build`",
	"ReplicaSet":    "use a Deployment",
	"Endpoints":     "berth computes endpoints from Service selectors",
	"EndpointSlice": "berth computes endpoints from Service selectors",
}

const supportedKinds = "berth supports v1 Namespace, Pod, ConfigMap, Secret, Service and apps/v1 Deployment"

// decoded is one object of a file, decoded, defaulted and checked on its own.
type decoded struct {
	obj any // *corev1.Pod, *appsv1.Deployment, ...
	src Object
	loc *locator
}

// fileResult is everything learnt from one file on its own. It depends only
// on the file's path and content, which is what lets the Decoder cache it.
type fileResult struct {
	objects []*decoded
	diags   []Diagnostic
}

// decodeFile decodes, defaults and validates every object of one file.
func decodeFile(filePath string, data []byte) *fileResult {
	fr := &fileResult{}
	if strings.EqualFold(path.Ext(filePath), ".json") {
		// A JSON file is one document; decoding it as JSON (rather than as
		// YAML, its superset) keeps JSON's own rules, tabs included.
		doc := document{data: data, firstLine: 1}
		for i, line := range strings.Split(string(data), "\n") {
			if strings.TrimSpace(line) != "" {
				doc.startLine = i + 1
				break
			}
		}
		if doc.startLine > 0 {
			fr.decodeDocument(filePath, &doc, true)
		}
		return fr
	}
	docs := splitDocuments(data)
	for i := range docs {
		fr.decodeDocument(filePath, &docs[i], false)
	}
	return fr
}

var yamlLineRE = regexp.MustCompile(`line (\d+): `)

func (fr *fileResult) decodeDocument(filePath string, doc *document, isJSON bool) {
	defer func() {
		// Validation is written not to panic (FuzzLoad checks it); this is the
		// last line of defence, so one bad document cannot take the
		// controller down.
		if r := recover(); r != nil {
			fr.diags = append(fr.diags, Diagnostic{File: filePath, Line: doc.startLine,
				Message: fmt.Sprintf("internal error while decoding this document (please report it): %v", r)})
		}
	}()
	var data []byte
	if isJSON {
		if err := checkJSONSyntax(doc.data); err != nil {
			fr.diags = append(fr.diags, Diagnostic{File: filePath, Line: jsonErrorLine(doc.data, err), Message: "invalid JSON: " + err.Error()})
			return
		}
		data = doc.data
	} else {
		var err error
		data, err = yaml.YAMLToJSONStrict(doc.data)
		if err != nil {
			fr.diags = append(fr.diags, yamlDiagnostic(filePath, doc, err))
			return
		}
	}
	if bytes.Equal(bytes.TrimSpace(data), []byte("null")) {
		return // a document of comments only
	}
	fr.decodeObject(filePath, doc, data, nil)
}

// yamlDiagnostic turns a YAML syntax error into a diagnostic at the file line
// the parser names.
func yamlDiagnostic(filePath string, doc *document, err error) Diagnostic {
	msg := strings.TrimPrefix(err.Error(), "error converting YAML to JSON: ")
	msg = strings.TrimPrefix(msg, "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:\n")
	line := doc.startLine
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		if n, convErr := strconv.Atoi(m[1]); convErr == nil && n > 0 {
			line = doc.firstLine + n - 1
		}
		msg = yamlLineRE.ReplaceAllString(msg, "")
	}
	msg = strings.Join(strings.Fields(msg), " ")
	return Diagnostic{File: filePath, Line: line, Message: "invalid YAML: " + msg}
}

func checkJSONSyntax(data []byte) error {
	var v any
	return json.Unmarshal(data, &v)
}

func jsonErrorLine(data []byte, err error) int {
	if ok, off := sigsjson.SyntaxErrorOffset(err); ok && off >= 0 && int(off) <= len(data) {
		return 1 + bytes.Count(data[:off], []byte("\n"))
	}
	return 1
}

// header is the part of an object read before its kind is known.
type header struct {
	APIVersion string
	Kind       string
	Name       string
	Namespace  string
}

func readHeader(top map[string]json.RawMessage) (header, field.ErrorList) {
	var h header
	var errs field.ErrorList
	for _, f := range []struct {
		name string
		dst  *string
	}{{"apiVersion", &h.APIVersion}, {"kind", &h.Kind}} {
		raw, ok := top[f.name]
		if !ok || bytes.Equal(raw, []byte("null")) {
			errs = append(errs, field.Required(field.NewPath(f.name), "every object needs apiVersion and kind"))
			continue
		}
		if err := json.Unmarshal(raw, f.dst); err != nil {
			errs = append(errs, field.Invalid(field.NewPath(f.name), string(raw), "must be a string"))
		}
	}
	// The name is only for naming the object in diagnostics; a malformed
	// metadata is reported by the typed decoding.
	var meta struct{ Name, Namespace string }
	_ = json.Unmarshal(top["metadata"], &meta)
	h.Name, h.Namespace = meta.Name, meta.Namespace
	return h, errs
}

// decodeObject decodes one object (or the items of a List) from JSON.
func (fr *fileResult) decodeObject(filePath string, doc *document, data []byte, prefix []pathStep) {
	loc := newLocator(doc, prefix)
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil || top == nil {
		fr.diags = append(fr.diags, Diagnostic{File: filePath, Line: loc.line(""),
			Message: "not a Kubernetes object: expected a mapping with apiVersion, kind and metadata"})
		return
	}
	h, errs := readHeader(top)
	src := Object{File: filePath, Line: loc.line(""), Kind: h.Kind, Namespace: h.Namespace, Name: h.Name}
	report := func(f findings) { fr.diags = append(fr.diags, diagnostics(src, loc, f)...) }
	reportErr := func(e *field.Error) {
		var f findings
		f.add(e)
		report(f)
	}
	if len(errs) > 0 {
		var f findings
		f.add(errs...)
		report(f)
		return
	}

	if h.Kind == "List" && prefix == nil {
		if h.APIVersion != "v1" {
			reportErr(field.NotSupported(field.NewPath("apiVersion"), h.APIVersion, []string{"v1"}))
			return
		}
		var items []json.RawMessage
		if err := json.Unmarshal(top["items"], &items); err != nil {
			reportErr(field.Invalid(field.NewPath("items"), field.OmitValueType{}, "must be a list of objects"))
			return
		}
		for i, item := range items {
			itemPrefix := append(append([]pathStep(nil), prefix...), pathStep{key: "items", index: -1}, pathStep{index: i})
			fr.decodeObject(filePath, doc, item, itemPrefix)
		}
		return
	}

	info, ok := kinds[h.Kind]
	if !ok {
		msg := fmt.Sprintf("kind %s (apiVersion %s) is not supported by berth", h.Kind, h.APIVersion)
		if hint, ok := kindHints[h.Kind]; ok {
			msg += ": " + hint
		} else {
			msg += " (" + supportedKinds + ")"
		}
		fr.diags = append(fr.diags, Diagnostic{File: filePath, Line: src.Line, Kind: h.Kind, Namespace: h.Namespace, Name: h.Name, Message: msg})
		return
	}
	if info.namespaced && src.Namespace == "" {
		src.Namespace = metav1NamespaceDefault
	}
	if h.APIVersion != info.apiVersion {
		reportErr(field.NotSupported(field.NewPath("apiVersion"), h.APIVersion, []string{info.apiVersion}))
		return
	}

	obj := info.new()
	strictErrs, err := sigsjson.UnmarshalStrict(data, obj)
	if err != nil {
		// The object is only partly decoded: report every type error and
		// unknown field in it, then leave it out of validation.
		var f findings
		typeErrors(&f, reflect.TypeOf(obj).Elem(), data)
		if len(f.issues) == 0 {
			f.addMessage("", "cannot decode: "+err.Error())
		}
		report(f)
		return
	}
	var f findings
	for _, se := range strictErrs {
		strictError(&f, reflect.TypeOf(obj).Elem(), se)
	}
	checkFields(obj, &f)
	setDefaults(obj)
	validateObject(obj, &f)
	report(f)
	fr.objects = append(fr.objects, &decoded{obj: obj, src: src, loc: loc})
}

const metav1NamespaceDefault = "default"

// diagnostics converts findings about one object into diagnostics.
func diagnostics(src Object, loc *locator, f findings) []Diagnostic {
	out := make([]Diagnostic, 0, len(f.issues))
	for _, is := range f.issues {
		p := is.field
		if p == "<nil>" {
			p = ""
		}
		out = append(out, Diagnostic{
			File: src.File, Line: loc.line(p),
			Kind: src.Kind, Namespace: src.Namespace, Name: src.Name,
			Field: p, Message: is.message, Warning: is.warning,
		})
	}
	return out
}

// strictError records a strict-decoding error of sigs.k8s.io/json (an
// unknown or duplicate field), with a suggestion when an unknown field looks
// like a misspelling.
func strictError(f *findings, root reflect.Type, err error) {
	fe, ok := err.(sigsjson.FieldError)
	if !ok {
		f.addMessage("", err.Error())
		return
	}
	p := fe.FieldPath()
	if strings.HasPrefix(err.Error(), "duplicate field") {
		f.addMessage(p, "duplicate field")
		return
	}
	f.addMessage(p, unknownFieldMessage(root, p))
}

// unknownFieldMessage explains a field the Kubernetes type does not have.
func unknownFieldMessage(root reflect.Type, fieldPath string) string {
	msg := "unknown field"
	steps := parsePath(fieldPath)
	if len(steps) > 0 {
		if parent := typeAt(root, steps[:len(steps)-1]); parent != nil {
			if s := suggest(steps[len(steps)-1].key, fieldNames(parent)); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
		}
	}
	return msg
}
