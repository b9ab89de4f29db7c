package manifest

import (
	"fmt"
	"testing"
)

// deploymentFiles returns n files of one Deployment each, every one with a
// probe, resources and a ConfigMap reference, plus that ConfigMap.
func deploymentFiles(b *testing.B, n int) []File {
	files := make([]File, 0, n+1)
	for i := range n {
		name := fmt.Sprintf("app-%04d", i)
		doc := variant(b, baseDeployment,
			set("metadata.name", name),
			set("spec.replicas", "3"),
			set("spec.selector.matchLabels.app", name),
			set("spec.template.metadata.labels.app", name),
			set(c0+".readinessProbe", "{httpGet: {port: http, path: /healthz}}"),
			set(c0+".resources", "{limits: {cpu: 500m, memory: 128Mi}}"),
			set(c0+".envFrom", "[{configMapRef: {name: cfg}}]"))
		files = append(files, File{Path: "apps/" + name + ".yaml", Data: []byte(doc)})
	}
	return append(files, File{Path: "cfg.yaml", Data: []byte(baseConfigMap)})
}

// BenchmarkLoad1000Deployments measures a cold load: every file decoded.
func BenchmarkLoad1000Deployments(b *testing.B) {
	files := deploymentFiles(b, 1000)
	b.ResetTimer()
	for b.Loop() {
		if _, err := NewDecoder().Load(files); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadOneFileChanged measures the common case of a GitOps loop: a
// commit changes one Deployment of a thousand. Only that file is decoded;
// cross-file validation and the copy into a new Set cover all of them.
func BenchmarkLoadOneFileChanged(b *testing.B) {
	files := deploymentFiles(b, 1000)
	d := NewDecoder()
	if _, err := d.Load(files); err != nil {
		b.Fatal(err)
	}
	versions := [2][]byte{files[500].Data, []byte(string(files[500].Data) + "# changed\n")}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		i++
		files[500].Data = versions[i%2]
		if _, err := d.Load(files); err != nil {
			b.Fatal(err)
		}
	}
}
