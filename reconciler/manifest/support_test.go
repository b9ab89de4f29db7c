package manifest

import (
	"reflect"
	"slices"
	"testing"
)

// TestRulesCoverEveryField makes every field of every type berth walks into an
// explicit decision: a field added to k8s.io/api fails this test until it is
// given a rule (and a line in docs/manifests.md).
func TestRulesCoverEveryField(t *testing.T) {
	for typ, table := range rules {
		fields, inlined := ownFields(typ)
		for name := range fields {
			if _, ok := table[name]; !ok {
				t.Errorf("%s.%s has no rule", typ, name)
			}
		}
		for _, in := range inlined {
			if _, ok := rules[in]; !ok {
				t.Errorf("%s inlines %s, which has no rule table", typ, in)
			}
		}
		for name := range table {
			if _, ok := fields[name]; !ok {
				t.Errorf("rule for %s.%s names no field", typ, name)
			}
		}
	}
}

// TestActedFieldsAreWalkable checks that every struct reachable through a
// field berth acts on has a rule table (or is a scalar-like leaf), so that
// nothing below a supported field escapes the walk.
func TestActedFieldsAreWalkable(t *testing.T) {
	for typ, table := range rules {
		for name, r := range table {
			if r.level != acted {
				continue
			}
			own, _ := ownFields(typ)
			if own[name] == nil {
				continue // reported by TestRulesCoverEveryField
			}
			ft := elemType(own[name])
			if ft.Kind() != reflect.Struct || isLeaf(ft) {
				continue
			}
			if _, ok := rules[ft]; !ok {
				t.Errorf("%s.%s is supported but its type %s has no rule table", typ, name, ft)
			}
		}
	}
}

// TestRulesHaveReasons: every field that is not simply supported says why.
func TestRulesHaveReasons(t *testing.T) {
	for typ, table := range rules {
		for name, r := range table {
			if r.level != acted && r.reason == "" {
				t.Errorf("%s.%s: %s without a reason", typ, name, r.level)
			}
		}
	}
}

// ownFields returns a struct's JSON fields, not counting those of inlined
// structs, which walkStruct checks against the inlined type's own table.
func ownFields(t reflect.Type) (map[string]reflect.Type, []reflect.Type) {
	fields := map[string]reflect.Type{}
	var inlined []reflect.Type
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, inline := jsonName(sf)
		switch {
		case inline:
			inlined = append(inlined, derefType(sf.Type))
		case name != "":
			fields[name] = sf.Type
		}
	}
	return fields, inlined
}

func elemType(t reflect.Type) reflect.Type {
	for {
		switch t.Kind() {
		case reflect.Pointer, reflect.Slice, reflect.Array:
			t = t.Elem()
		case reflect.Map:
			t = t.Elem()
		default:
			return t
		}
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"imagePullPolicy", "image", "ports", "env", "envFrom", "volumeMounts"}
	for _, tc := range []struct{ in, want string }{
		{"imagePullPolice", "imagePullPolicy"},
		{"volumemounts", "volumeMounts"},
		{"volumeMount", "volumeMounts"},
		{"prt", ""}, // too short to guess safely
		{"port", "ports"},
		{"somethingElse", ""},
	} {
		if got := suggest(tc.in, known); got != tc.want {
			t.Errorf("suggest(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if !slices.Contains(known, "image") {
		t.Fatal("unreachable")
	}
}
