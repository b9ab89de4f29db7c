package manifest

import (
	"crypto/sha256"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"berth.dev/berth/sources"
)

// File is one file of a revision, as sources read it: Path relative to the
// repository root, slash-separated.
type File = sources.File

// Object names where an object of a revision was declared.
type Object struct {
	File      string
	Line      int
	Kind      string
	Namespace string // "" for cluster-scoped kinds
	Name      string
}

// Key identifies an object within a revision: "Kind/namespace/name", with an
// empty namespace for cluster-scoped kinds ("Namespace//prod").
func Key(kind, namespace, name string) string {
	return kind + "/" + namespace + "/" + name
}

// Set is the desired state of one accepted revision: every object decoded,
// defaulted and validated, in file order then document order.
type Set struct {
	Namespaces  []*corev1.Namespace
	Pods        []*corev1.Pod
	Deployments []*appsv1.Deployment
	ConfigMaps  []*corev1.ConfigMap
	Secrets     []*corev1.Secret
	Services    []*corev1.Service
	// Sources maps Key(kind, namespace, name) to where the object was declared.
	Sources map[string]Object
	// Warnings lists fields berth accepted without acting on them.
	Warnings []Diagnostic
}

// Decoder loads revisions. It remembers each file it decoded by path and
// content hash, so loading a revision that differs from the last one in a few
// files decodes only those files. A Decoder is safe for concurrent use; loads
// are serialised.
type Decoder struct {
	mu    sync.Mutex
	cache map[cacheKey]*fileResult

	// onDecode, when set, is called for every file actually decoded (a cache
	// miss). Tests use it to count decodes.
	onDecode func(path string)
}

type cacheKey struct {
	path string
	sum  [sha256.Size]byte
}

// NewDecoder returns a Decoder with an empty cache.
func NewDecoder() *Decoder {
	return &Decoder{cache: map[cacheKey]*fileResult{}}
}

// manifestFile reports whether a path names a manifest. Callers filter
// already; this guards against anything else slipping through.
func manifestFile(p string) bool {
	switch strings.ToLower(path.Ext(p)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// Load decodes, defaults and validates a whole revision. When anything is
// wrong it returns a nil Set and an Errors value holding every error and
// warning, so the revision can be refused whole and fixed in one go.
//
// The objects of the Set are the caller's: they are copies, never shared with
// the Decoder's cache or with other Sets.
func (d *Decoder) Load(files []File) (*Set, error) {
	d.mu.Lock()
	defer d.mu.Unlock()

	files = slices.Clone(files)
	slices.SortStableFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })

	var diags []Diagnostic
	results := make([]*fileResult, 0, len(files))
	next := make(map[cacheKey]*fileResult, len(files))
	for i, f := range files {
		if !manifestFile(f.Path) {
			continue
		}
		if i > 0 && files[i-1].Path == f.Path {
			diags = append(diags, Diagnostic{File: f.Path, Message: "the revision lists this file twice"})
			continue
		}
		key := cacheKey{path: f.Path, sum: sha256.Sum256(f.Data)}
		fr, ok := d.cache[key]
		if !ok {
			if d.onDecode != nil {
				d.onDecode(f.Path)
			}
			fr = decodeFile(f.Path, f.Data)
		}
		next[key] = fr
		results = append(results, fr)
	}
	// Keep only this revision's files: the next revision is most likely a
	// small change to this one.
	d.cache = next

	for _, fr := range results {
		diags = append(diags, fr.diags...)
	}
	objects := make([]*decoded, 0, len(results))
	for _, fr := range results {
		objects = append(objects, fr.objects...)
	}
	diags = append(diags, crossValidate(objects)...)
	sortDiagnostics(diags)

	if Errors(diags).ErrorCount() > 0 {
		return nil, Errors(diags)
	}
	return buildSet(objects, diags), nil
}

// buildSet copies the objects out of the cache into a new Set.
func buildSet(objects []*decoded, warnings []Diagnostic) *Set {
	s := &Set{Sources: make(map[string]Object, len(objects)), Warnings: warnings}
	for _, o := range objects {
		s.Sources[Key(o.src.Kind, o.src.Namespace, o.src.Name)] = o.src
		switch obj := o.obj.(type) {
		case *corev1.Namespace:
			s.Namespaces = append(s.Namespaces, obj.DeepCopy())
		case *corev1.Pod:
			s.Pods = append(s.Pods, obj.DeepCopy())
		case *appsv1.Deployment:
			s.Deployments = append(s.Deployments, obj.DeepCopy())
		case *corev1.ConfigMap:
			s.ConfigMaps = append(s.ConfigMaps, obj.DeepCopy())
		case *corev1.Secret:
			s.Secrets = append(s.Secrets, obj.DeepCopy())
		case *corev1.Service:
			s.Services = append(s.Services, obj.DeepCopy())
		default:
			panic(fmt.Sprintf("manifest: decoded object of unexpected type %T", obj))
		}
	}
	return s
}
