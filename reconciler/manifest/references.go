package manifest

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// revisionIndex holds what cross-object rules look objects up by.
type revisionIndex struct {
	namespaces map[string]bool
	configMaps map[string]*corev1.ConfigMap // by namespace/name
	secrets    map[string]*corev1.Secret    // by namespace/name
}

// crossValidate checks the rules that span objects: no object declared
// twice, every namespace declared, every referenced ConfigMap, Secret and key
// present. It runs over the whole revision on every load, with map lookups
// only, so it stays cheap when decoding was incremental.
func crossValidate(objects []*decoded) []Diagnostic {
	var diags []Diagnostic
	idx := revisionIndex{namespaces: map[string]bool{}, configMaps: map[string]*corev1.ConfigMap{}, secrets: map[string]*corev1.Secret{}}
	first := make(map[string]*decoded, len(objects))
	for _, o := range objects {
		if o.src.Name == "" {
			continue // already an error; it cannot be looked up either
		}
		key := Key(o.src.Kind, o.src.Namespace, o.src.Name)
		if prev, dup := first[key]; dup {
			var f findings
			f.add(&field.Error{Type: field.ErrorTypeDuplicate, Field: "metadata.name", BadValue: o.src.Name,
				Detail: fmt.Sprintf("%s %s is also declared at %s:%d", o.src.Kind, objectID(o.src.Namespace, o.src.Name), prev.src.File, prev.src.Line)})
			diags = append(diags, diagnostics(o.src, o.loc, f)...)
			continue
		}
		first[key] = o
		switch obj := o.obj.(type) {
		case *corev1.Namespace:
			idx.namespaces[obj.Name] = true
		case *corev1.ConfigMap:
			idx.configMaps[obj.Namespace+"/"+obj.Name] = obj
		case *corev1.Secret:
			idx.secrets[obj.Namespace+"/"+obj.Name] = obj
		}
	}

	for _, o := range objects {
		var f findings
		// An invalid namespace name is already an error of its own.
		if ns := o.src.Namespace; o.src.Kind != "Namespace" && ns != "" && ns != metav1NamespaceDefault && !idx.namespaces[ns] &&
			len(apivalidation.ValidateNamespaceName(ns, false)) == 0 {
			f.add(&field.Error{Type: field.ErrorTypeNotFound, Field: "metadata.namespace", BadValue: ns,
				Detail: fmt.Sprintf("the revision declares no Namespace %q", ns)})
		}
		switch obj := o.obj.(type) {
		case *corev1.Pod:
			idx.checkPodRefs(&obj.Spec, obj.Namespace, field.NewPath("spec"), &f)
		case *appsv1.Deployment:
			idx.checkPodRefs(&obj.Spec.Template.Spec, obj.Namespace, field.NewPath("spec", "template", "spec"), &f)
		}
		diags = append(diags, diagnostics(o.src, o.loc, f)...)
	}
	return diags
}

// checkPodRefs checks that every ConfigMap, Secret and key a pod refers to is
// in the revision, unless the reference is optional. Kubernetes would accept
// the pod and leave it stuck in ContainerCreating; refusing the revision says
// so at review time instead.
func (idx revisionIndex) checkPodRefs(spec *corev1.PodSpec, ns string, p *field.Path, f *findings) {
	for ci := range spec.Containers {
		c := &spec.Containers[ci]
		cp := p.Child("containers").Index(ci)
		for ei, ev := range c.Env {
			if ev.ValueFrom == nil {
				continue
			}
			vp := cp.Child("env").Index(ei).Child("valueFrom")
			if r := ev.ValueFrom.ConfigMapKeyRef; r != nil {
				rp := vp.Child("configMapKeyRef")
				idx.check(ref{"ConfigMap", ns, r.Name, rp.Child("name"), r.Optional, []keyRef{{r.Key, rp.Child("key")}}}, f)
			}
			if r := ev.ValueFrom.SecretKeyRef; r != nil {
				rp := vp.Child("secretKeyRef")
				idx.check(ref{"Secret", ns, r.Name, rp.Child("name"), r.Optional, []keyRef{{r.Key, rp.Child("key")}}}, f)
			}
		}
		for ei, ef := range c.EnvFrom {
			ep := cp.Child("envFrom").Index(ei)
			if r := ef.ConfigMapRef; r != nil {
				idx.check(ref{"ConfigMap", ns, r.Name, ep.Child("configMapRef", "name"), r.Optional, nil}, f)
			}
			if r := ef.SecretRef; r != nil {
				idx.check(ref{"Secret", ns, r.Name, ep.Child("secretRef", "name"), r.Optional, nil}, f)
			}
		}
	}
	for vi, v := range spec.Volumes {
		vp := p.Child("volumes").Index(vi)
		if cm := v.ConfigMap; cm != nil {
			cp := vp.Child("configMap")
			idx.check(ref{"ConfigMap", ns, cm.Name, cp.Child("name"), cm.Optional, itemKeys(cm.Items, cp)}, f)
		}
		if s := v.Secret; s != nil {
			sp := vp.Child("secret")
			idx.check(ref{"Secret", ns, s.SecretName, sp.Child("secretName"), s.Optional, itemKeys(s.Items, sp)}, f)
		}
	}
}

// ref is one reference from a pod to a ConfigMap or Secret.
type ref struct {
	kind, namespace, name string
	namePath              *field.Path
	optional              *bool
	keys                  []keyRef
}

// keyRef is one key a reference needs, and where the manifest names it.
type keyRef struct {
	key  string
	path *field.Path
}

func itemKeys(items []corev1.KeyToPath, p *field.Path) []keyRef {
	keys := make([]keyRef, len(items))
	for i, it := range items {
		keys[i] = keyRef{it.Key, p.Child("items").Index(i).Child("key")}
	}
	return keys
}

// check reports a referenced object or key that the revision lacks.
func (idx revisionIndex) check(r ref, f *findings) {
	if r.name == "" || (r.optional != nil && *r.optional) {
		return
	}
	var has func(key string) bool
	switch r.kind {
	case "ConfigMap":
		cm, ok := idx.configMaps[r.namespace+"/"+r.name]
		if ok {
			has = func(k string) bool {
				_, inData := cm.Data[k]
				_, inBinary := cm.BinaryData[k]
				return inData || inBinary
			}
		}
	case "Secret":
		s, ok := idx.secrets[r.namespace+"/"+r.name]
		if ok {
			has = func(k string) bool { _, ok := s.Data[k]; return ok }
		}
	}
	id := r.namespace + "/" + r.name
	if has == nil {
		f.add(&field.Error{Type: field.ErrorTypeNotFound, Field: r.namePath.String(), BadValue: r.name,
			Detail: fmt.Sprintf("the revision declares no %s %s (set optional: true if it may be absent)", r.kind, id)})
		return
	}
	for _, k := range r.keys {
		if k.key != "" && !has(k.key) {
			f.add(&field.Error{Type: field.ErrorTypeNotFound, Field: k.path.String(), BadValue: k.key,
				Detail: fmt.Sprintf("%s %s has no such key (set optional: true if it may be absent)", r.kind, id)})
		}
	}
}
