package manifest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

var (
	jsonUnmarshalerType = reflect.TypeFor[json.Unmarshaler]()
	byteSliceType       = reflect.TypeFor[[]byte]()
)

// typeErrors reports every value of data that does not fit the Go type root,
// and every unknown field, with its full path. encoding/json stops at the
// first such error and names it without list indexes; this walk names all of
// them precisely. It runs only when decoding has already failed.
func typeErrors(f *findings, root reflect.Type, data []byte) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		f.addMessage("", "cannot decode: "+err.Error())
		return
	}
	checkType(f, root, v, nil)
}

func checkType(f *findings, t reflect.Type, v any, path *field.Path) {
	if v == nil {
		return // null leaves any field at its zero value
	}
	t = derefType(t)
	mismatch := func(want string) {
		f.add(field.Invalid(path, field.OmitValueType{}, fmt.Sprintf("must be %s, not %s", want, jsonKind(v))))
	}
	if t.Kind() == reflect.Struct && reflect.PointerTo(t).Implements(jsonUnmarshalerType) {
		raw, err := json.Marshal(v)
		if err == nil {
			err = json.Unmarshal(raw, reflect.New(t).Interface())
		}
		if err != nil {
			f.add(field.Invalid(path, field.OmitValueType{}, err.Error()))
		}
		return
	}
	if t == byteSliceType {
		s, ok := v.(string)
		if !ok {
			mismatch("a base64-encoded string")
			return
		}
		if _, err := base64.StdEncoding.DecodeString(s); err != nil {
			// The error names a byte offset, never the (secret) value.
			f.add(field.Invalid(path, field.OmitValueType{}, "must be base64-encoded: "+err.Error()))
		}
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			mismatch("an object")
			return
		}
		fields := structFields(t)
		for _, k := range sortedKeys(obj) {
			ft, ok := fields[k]
			if !ok {
				p := childPath(path, k)
				f.addMessage(p.String(), "unknown field")
				continue
			}
			checkType(f, ft, obj[k], childPath(path, k))
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			mismatch("an object")
			return
		}
		for _, k := range sortedKeys(obj) {
			checkType(f, t.Elem(), obj[k], path.Key(k))
		}
	case reflect.Slice, reflect.Array:
		list, ok := v.([]any)
		if !ok {
			mismatch("a list")
			return
		}
		for i, item := range list {
			checkType(f, t.Elem(), item, path.Index(i))
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			mismatch("a string")
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			mismatch("a boolean")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(json.Number)
		if !ok {
			mismatch("an integer")
			return
		}
		if _, err := strconv.ParseInt(string(n), 10, t.Bits()); err != nil {
			f.add(field.Invalid(path, string(n), fmt.Sprintf("must be an integer that fits in %d bits", t.Bits())))
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(json.Number)
		if !ok {
			mismatch("an integer")
			return
		}
		if _, err := strconv.ParseUint(string(n), 10, t.Bits()); err != nil {
			f.add(field.Invalid(path, string(n), "must be a non-negative integer"))
		}
	case reflect.Float32, reflect.Float64:
		n, ok := v.(json.Number)
		if !ok {
			mismatch("a number")
			return
		}
		if x, err := n.Float64(); err != nil || math.IsInf(x, 0) {
			f.add(field.Invalid(path, string(n), "must be a number"))
		}
	}
}

func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return "null"
}

// sortedKeys gives diagnostics a stable order.
func sortedKeys(m map[string]any) []string {
	return slices.Sorted(maps.Keys(m))
}

// structFields maps the JSON names of a struct's fields (inlined ones
// included) to their types.
func structFields(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			sf := t.Field(i)
			if !sf.IsExported() {
				continue
			}
			name, inline := jsonName(sf)
			if inline {
				add(derefType(sf.Type))
				continue
			}
			if name != "" {
				out[name] = sf.Type
			}
		}
	}
	add(t)
	return out
}

// typeAt follows a field path from a Go type, returning the struct type at
// its end, or nil.
func typeAt(t reflect.Type, steps []pathStep) reflect.Type {
	t = derefType(t)
	for _, s := range steps {
		switch t.Kind() {
		case reflect.Struct:
			ft, ok := structFields(t)[s.key]
			if !ok || s.index >= 0 {
				return nil
			}
			t = derefType(ft)
		case reflect.Slice, reflect.Map:
			t = derefType(t.Elem())
		default:
			return nil
		}
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	return t
}

func fieldNames(t reflect.Type) []string {
	m := structFields(t)
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	return names
}

// suggest returns the known field name closest to an unknown one, if it is
// close enough to be a likely misspelling.
func suggest(unknown string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if strings.EqualFold(k, unknown) {
			return k
		}
		if d := editDistance(strings.ToLower(unknown), strings.ToLower(k)); d < bestDist || (d == bestDist && k < best) {
			best, bestDist = k, d
		}
	}
	if bestDist > 2 || len(unknown) < 4 {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between two short strings.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
