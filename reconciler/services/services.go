// Package services turns Service manifests into the table node proxies
// program: it allocates ClusterIPs and NodePorts (Allocator) and resolves
// each Service's ready endpoints from the live pods (Table). Both are pure:
// the controller persists allocations and supplies the pods.
package services

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"berth.dev/berth/api"
)

// NodePort range, as Kubernetes' default --service-node-port-range.
const (
	MinNodePort = 30000
	MaxNodePort = 32767
)

// Allocations maps keys to allocated values: "ip/<ns>/<name>" to a
// ClusterIP, "port/<ns>/<name>/<port>/<protocol>" to a NodePort. It is what
// the controller persists, so allocations survive restarts.
type Allocations map[string]string

func ipKey(ns, name string) string { return "ip/" + ns + "/" + name }

func portKey(ns, name string, p corev1.ServicePort) string {
	return fmt.Sprintf("port/%s/%s/%d/%s", ns, name, p.Port, p.Protocol)
}

// Problem is one Service that cannot be given what it asks for.
type Problem struct {
	Namespace, Name string
	Field           string // e.g. spec.ports[0].nodePort
	Message         string
}

func (p Problem) Error() string {
	return fmt.Sprintf("Service %s/%s: %s: %s", p.Namespace, p.Name, p.Field, p.Message)
}

// Allocate returns the allocations for exactly these Services: existing
// ones kept, values written in the manifests honoured, new ones taken from
// cidr and the NodePort range (lowest free first, so results are
// deterministic), and those of removed Services released. It never changes
// an allocation a Service already holds unless its manifest asks for
// another value.
func Allocate(svcs []*corev1.Service, cidr netip.Prefix, prev Allocations) (Allocations, []Problem) {
	next := Allocations{}
	usedIP := map[string]string{}   // ip -> owner key
	usedPort := map[string]string{} // port -> owner key
	var problems []Problem

	// Pass 1: values already held, then values the manifests fix. Held
	// values come first so that a running Service never loses its address
	// to another one asking for it: the newcomer is refused, as Kubernetes
	// refuses it.
	claim := func(used map[string]string, key, value string) bool {
		if owner, ok := used[value]; ok && owner != key {
			return false
		}
		used[value] = key
		next[key] = value
		return true
	}
	sorted := append([]*corev1.Service(nil), svcs...)
	sort.Slice(sorted, func(i, j int) bool {
		return sorted[i].Namespace+"/"+sorted[i].Name < sorted[j].Namespace+"/"+sorted[j].Name
	})
	for _, s := range sorted {
		k := ipKey(s.Namespace, s.Name)
		if held, ok := prev[k]; ok && (s.Spec.ClusterIP == "" || s.Spec.ClusterIP == held) {
			if addr, err := netip.ParseAddr(held); err == nil && cidr.Contains(addr) {
				claim(usedIP, k, held)
			}
		}
		if s.Spec.Type != corev1.ServiceTypeNodePort {
			continue
		}
		for _, p := range s.Spec.Ports {
			pk := portKey(s.Namespace, s.Name, p)
			if held, ok := prev[pk]; ok && (p.NodePort == 0 || strconv.Itoa(int(p.NodePort)) == held) {
				claim(usedPort, pk, held)
			}
		}
	}
	for _, s := range sorted {
		k := ipKey(s.Namespace, s.Name)
		if ip := s.Spec.ClusterIP; ip != "" {
			addr, err := netip.ParseAddr(ip)
			switch {
			case err != nil || !cidr.Contains(addr):
				problems = append(problems, Problem{s.Namespace, s.Name, "spec.clusterIP", fmt.Sprintf("Invalid value: %q: not in the service range %s", ip, cidr)})
			case !claim(usedIP, k, addr.String()):
				problems = append(problems, Problem{s.Namespace, s.Name, "spec.clusterIP", fmt.Sprintf("Invalid value: %q: provided IP is already allocated to %s", ip, trimKey(usedIP[addr.String()]))})
			}
		}
		if s.Spec.Type != corev1.ServiceTypeNodePort {
			continue
		}
		for i, p := range s.Spec.Ports {
			if p.NodePort == 0 {
				continue
			}
			pk := portKey(s.Namespace, s.Name, p)
			v := strconv.Itoa(int(p.NodePort))
			field := fmt.Sprintf("spec.ports[%d].nodePort", i)
			if p.NodePort < MinNodePort || p.NodePort > MaxNodePort {
				problems = append(problems, Problem{s.Namespace, s.Name, field, fmt.Sprintf("Invalid value: %d: provided port is not in the valid range. The range of valid ports is %d-%d", p.NodePort, MinNodePort, MaxNodePort)})
			} else if !claim(usedPort, pk, v) {
				problems = append(problems, Problem{s.Namespace, s.Name, field, fmt.Sprintf("Invalid value: %d: provided port is already allocated to %s", p.NodePort, trimKey(usedPort[v]))})
			}
		}
	}

	// Pass 2: fresh values for whatever is still missing.
	nextIP := cidr.Masked().Addr().Next() // skip the network address
	nextPort := MinNodePort
	for _, s := range sorted {
		k := ipKey(s.Namespace, s.Name)
		if _, ok := next[k]; !ok && s.Spec.ClusterIP == "" {
			for ; cidr.Contains(nextIP); nextIP = nextIP.Next() {
				if _, taken := usedIP[nextIP.String()]; !taken && cidr.Contains(nextIP.Next()) { // not the broadcast
					break
				}
			}
			if !cidr.Contains(nextIP) || !cidr.Contains(nextIP.Next()) {
				problems = append(problems, Problem{s.Namespace, s.Name, "spec.clusterIP", fmt.Sprintf("no free address left in the service range %s", cidr)})
			} else {
				claim(usedIP, k, nextIP.String())
			}
		}
		if s.Spec.Type != corev1.ServiceTypeNodePort {
			continue
		}
		for i, p := range s.Spec.Ports {
			pk := portKey(s.Namespace, s.Name, p)
			if _, ok := next[pk]; ok || p.NodePort != 0 {
				continue
			}
			for ; nextPort <= MaxNodePort; nextPort++ {
				if _, taken := usedPort[strconv.Itoa(nextPort)]; !taken {
					break
				}
			}
			if nextPort > MaxNodePort {
				problems = append(problems, Problem{s.Namespace, s.Name, fmt.Sprintf("spec.ports[%d].nodePort", i), "no free NodePort left"})
				continue
			}
			claim(usedPort, pk, strconv.Itoa(nextPort))
		}
	}
	return next, problems
}

// trimKey turns an allocation key into the owning Service's "ns/name".
func trimKey(k string) string {
	parts := strings.SplitN(k, "/", 4)
	return parts[1] + "/" + parts[2]
}

// Apply returns copies of the Services with their allocated ClusterIP and
// NodePorts filled in, as `kubectl get svc` would show them.
func Apply(svcs []*corev1.Service, alloc Allocations) []*corev1.Service {
	out := make([]*corev1.Service, 0, len(svcs))
	for _, s := range svcs {
		cp := s.DeepCopy()
		if ip, ok := alloc[ipKey(s.Namespace, s.Name)]; ok {
			cp.Spec.ClusterIP = ip
			cp.Spec.ClusterIPs = []string{ip}
		}
		for i, p := range cp.Spec.Ports {
			if v, ok := alloc[portKey(s.Namespace, s.Name, p)]; ok {
				n, _ := strconv.Atoi(v)
				cp.Spec.Ports[i].NodePort = int32(n)
			}
		}
		out = append(out, cp)
	}
	return out
}

// Table resolves the service table: for every Service (with allocations
// applied, see Apply), every port, the ready pods its selector matches, with
// targetPort resolved per pod (a named targetPort is looked up among the
// pod's container ports, as the endpoints controller does). Pods that are
// terminating, unready or without an address are never endpoints.
func Table(svcs []*corev1.Service, pods []*corev1.Pod) []api.Service {
	byNamespace := map[string][]*corev1.Pod{}
	for _, p := range pods {
		if p.DeletionTimestamp != nil || p.Status.PodIP == "" || !api.PodReady(p) {
			continue
		}
		byNamespace[p.Namespace] = append(byNamespace[p.Namespace], p)
	}
	for _, ps := range byNamespace {
		sort.Slice(ps, func(i, j int) bool { return ps[i].Name < ps[j].Name })
	}
	out := make([]api.Service, 0, len(svcs))
	for _, s := range svcs {
		entry := api.Service{
			Namespace: s.Namespace,
			Name:      s.Name,
			Type:      string(s.Spec.Type),
			ClusterIP: s.Spec.ClusterIP,
		}
		if s.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
			entry.AffinitySeconds = corev1.DefaultClientIPServiceAffinitySeconds
			if c := s.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
				entry.AffinitySeconds = *c.ClientIP.TimeoutSeconds
			}
		}
		var selector labels.Selector
		if len(s.Spec.Selector) > 0 {
			// A Service without a selector has no managed endpoints, as in
			// Kubernetes.
			selector = labels.SelectorFromSet(s.Spec.Selector)
		}
		for _, sp := range s.Spec.Ports {
			port := api.ServicePort{Name: sp.Name, Protocol: string(sp.Protocol), Port: sp.Port, NodePort: sp.NodePort, Endpoints: []api.Endpoint{}}
			if selector != nil {
				for _, p := range byNamespace[s.Namespace] {
					if !selector.Matches(labels.Set(p.Labels)) {
						continue
					}
					target, ok := resolveTargetPort(p, sp)
					if !ok {
						continue
					}
					port.Endpoints = append(port.Endpoints, api.Endpoint{IP: p.Status.PodIP, Port: target, Node: p.Spec.NodeName, Pod: p.Namespace + "/" + p.Name})
				}
			}
			sort.Slice(port.Endpoints, func(i, j int) bool {
				a, b := port.Endpoints[i], port.Endpoints[j]
				if a.IP != b.IP {
					return a.IP < b.IP
				}
				return a.Port < b.Port
			})
			entry.Ports = append(entry.Ports, port)
		}
		out = append(out, entry)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Namespace+"/"+out[i].Name < out[j].Namespace+"/"+out[j].Name
	})
	return out
}

func resolveTargetPort(p *corev1.Pod, sp corev1.ServicePort) (int32, bool) {
	tp := sp.TargetPort
	switch {
	case tp.Type == intstr.String && tp.StrVal != "":
		for _, c := range p.Spec.Containers {
			for _, cp := range c.Ports {
				proto := cp.Protocol
				if proto == "" {
					proto = corev1.ProtocolTCP
				}
				if cp.Name == tp.StrVal && proto == sp.Protocol {
					return cp.ContainerPort, true
				}
			}
		}
		return 0, false
	case tp.Type == intstr.Int && tp.IntVal != 0:
		return tp.IntVal, true
	default:
		return sp.Port, true
	}
}

// EndpointSlices renders the table as Kubernetes EndpointSlices, for
// `berth get endpointslices` and `berth get services -o wide`: one slice per
// Service port and target port number (a named targetPort may resolve to
// different numbers on different pods), labelled with the Service's name as
// the EndpointSlice controller labels them.
func EndpointSlices(table []api.Service) []discoveryv1.EndpointSlice {
	var out []discoveryv1.EndpointSlice
	for _, s := range table {
		for _, p := range s.Ports {
			byPort := map[int32]int{}
			for _, e := range p.Endpoints {
				i, ok := byPort[e.Port]
				if !ok {
					i = len(out)
					byPort[e.Port] = i
					name, port, proto := p.Name, e.Port, corev1.Protocol(p.Protocol)
					slice := discoveryv1.EndpointSlice{
						AddressType: discoveryv1.AddressTypeIPv4,
						Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
					}
					slice.APIVersion, slice.Kind = "discovery.k8s.io/v1", "EndpointSlice"
					slice.Namespace = s.Namespace
					slice.Name = fmt.Sprintf("%s-%d-%d", s.Name, p.Port, e.Port)
					slice.Labels = map[string]string{discoveryv1.LabelServiceName: s.Name}
					out = append(out, slice)
				}
				ready, node := true, e.Node
				ep := discoveryv1.Endpoint{Addresses: []string{e.IP}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}
				if node != "" {
					ep.NodeName = &node
				}
				out[i].Endpoints = append(out[i].Endpoints, ep)
			}
		}
	}
	return out
}
