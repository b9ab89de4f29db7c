package manifest

import (
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to Load, as one YAML file beside valid
// objects and as a JSON file. Load must never panic, and the recover() in
// decodeDocument must never be what saved it.
func FuzzLoad(f *testing.F) {
	for _, seed := range []string{
		baseDeployment, basePod, baseService, baseConfigMap, baseSecret,
		"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: a}}\n",
		"---\n--- {a: 1}\n...\nkind: Pod\n",
		"apiVersion: apps/v1\nkind: Deployment\nspec: {replicas: '3', template: {spec: {containers: [{ports: [{containerPort: 1e9}]}]}}}\n",
		"a: &x [*x]\n",
		"{\"apiVersion\": \"v1\", \"kind\": \"Secret\", \"data\": {\"k\": \"!!\"}}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDecoder()
		for _, name := range []string{"fuzz.yaml", "fuzz.json"} {
			_, err := d.Load([]File{{Path: name, Data: data}, {Path: "base.yaml", Data: []byte(baseConfigMap)}})
			if err != nil && strings.Contains(err.Error(), "internal error") {
				t.Fatalf("a panic was recovered:\n%s", err)
			}
		}
	})
}
