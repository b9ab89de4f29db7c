package services

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"berth.dev/berth/api"
)

var cidr = netip.MustParsePrefix("10.96.0.0/16")

func svc(name string, typ corev1.ServiceType, clusterIP string, ports ...corev1.ServicePort) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
	s.Spec.Type = typ
	s.Spec.ClusterIP = clusterIP
	s.Spec.Selector = map[string]string{"app": name}
	if len(ports) == 0 {
		ports = []corev1.ServicePort{{Port: 80, Protocol: corev1.ProtocolTCP}}
	}
	s.Spec.Ports = ports
	return s
}

func TestAllocate(t *testing.T) {
	tcp := func(port, nodePort int32) corev1.ServicePort {
		return corev1.ServicePort{Port: port, NodePort: nodePort, Protocol: corev1.ProtocolTCP}
	}
	tests := []struct {
		name     string
		svcs     []*corev1.Service
		prev     Allocations
		want     Allocations
		problems []string // substrings, one per expected problem
	}{{
		name: "fresh allocations are the lowest free values",
		svcs: []*corev1.Service{svc("a", corev1.ServiceTypeClusterIP, ""), svc("b", corev1.ServiceTypeNodePort, "", tcp(80, 0), tcp(443, 0))},
		want: Allocations{"ip/default/a": "10.96.0.1", "ip/default/b": "10.96.0.2", "port/default/b/80/TCP": "30000", "port/default/b/443/TCP": "30001"},
	}, {
		name: "held allocations are kept, even when a lower value is free",
		svcs: []*corev1.Service{svc("a", corev1.ServiceTypeNodePort, "", tcp(80, 0)), svc("b", corev1.ServiceTypeClusterIP, "")},
		prev: Allocations{"ip/default/a": "10.96.0.9", "port/default/a/80/TCP": "31000", "ip/gone/x": "10.96.0.1"},
		want: Allocations{"ip/default/a": "10.96.0.9", "port/default/a/80/TCP": "31000", "ip/default/b": "10.96.0.1"},
	}, {
		name:     "a running Service keeps its address when a newcomer asks for it",
		svcs:     []*corev1.Service{svc("a", corev1.ServiceTypeClusterIP, ""), svc("b", corev1.ServiceTypeClusterIP, "10.96.0.5")},
		prev:     Allocations{"ip/default/a": "10.96.0.5"},
		want:     Allocations{"ip/default/a": "10.96.0.5"},
		problems: []string{"Service default/b: spec.clusterIP: Invalid value: \"10.96.0.5\": provided IP is already allocated to default/a"},
	}, {
		name: "a manifest may move its own Service to a new fixed address",
		svcs: []*corev1.Service{svc("a", corev1.ServiceTypeClusterIP, "10.96.0.8")},
		prev: Allocations{"ip/default/a": "10.96.0.5"},
		want: Allocations{"ip/default/a": "10.96.0.8"},
	}, {
		name:     "a clusterIP outside the range is refused",
		svcs:     []*corev1.Service{svc("a", corev1.ServiceTypeClusterIP, "192.168.1.1")},
		want:     Allocations{},
		problems: []string{"Service default/a: spec.clusterIP: Invalid value: \"192.168.1.1\": not in the service range 10.96.0.0/16"},
	}, {
		name:     "two manifests asking for one clusterIP",
		svcs:     []*corev1.Service{svc("a", corev1.ServiceTypeClusterIP, "10.96.0.7"), svc("b", corev1.ServiceTypeClusterIP, "10.96.0.7")},
		want:     Allocations{"ip/default/a": "10.96.0.7"},
		problems: []string{"Service default/b: spec.clusterIP", "already allocated to default/a"},
	}, {
		name:     "nodePort out of range and taken",
		svcs:     []*corev1.Service{svc("a", corev1.ServiceTypeNodePort, "", tcp(80, 30080)), svc("b", corev1.ServiceTypeNodePort, "", tcp(80, 30080), tcp(81, 80))},
		want:     Allocations{"ip/default/a": "10.96.0.1", "ip/default/b": "10.96.0.2", "port/default/a/80/TCP": "30080"},
		problems: []string{"spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated to default/a", "spec.ports[1].nodePort: Invalid value: 80"},
	}, {
		name: "ClusterIP Services get no NodePort",
		svcs: []*corev1.Service{svc("a", corev1.ServiceTypeClusterIP, "", tcp(80, 0))},
		prev: Allocations{"port/default/a/80/TCP": "30000"},
		want: Allocations{"ip/default/a": "10.96.0.1"},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, problems := Allocate(tc.svcs, cidr, tc.prev)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("allocations:\n got %v\nwant %v", got, tc.want)
			}
			var text []string
			for _, p := range problems {
				text = append(text, p.Error())
			}
			joined := strings.Join(text, "\n")
			for _, want := range tc.problems {
				if !strings.Contains(joined, want) {
					t.Errorf("problems %q do not mention %q", joined, want)
				}
			}
			if len(tc.problems) == 0 && len(problems) > 0 {
				t.Errorf("unexpected problems: %s", joined)
			}
		})
	}
}

func TestAllocateExhaustion(t *testing.T) {
	small := netip.MustParsePrefix("10.96.0.0/30") // .1 and .2 usable
	svcs := []*corev1.Service{svc("a", corev1.ServiceTypeClusterIP, ""), svc("b", corev1.ServiceTypeClusterIP, ""), svc("c", corev1.ServiceTypeClusterIP, "")}
	got, problems := Allocate(svcs, small, nil)
	if len(got) != 2 || len(problems) != 1 || !strings.Contains(problems[0].Error(), "default/c") {
		t.Fatalf("got %v, problems %v; want two addresses and c refused", got, problems)
	}
}

func pod(name, ip string, ready bool, lbls map[string]string, ports ...corev1.ContainerPort) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: lbls}}
	p.Spec.NodeName = "n1"
	p.Spec.Containers = []corev1.Container{{Name: "c", Ports: ports}}
	p.Status.PodIP = ip
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}
	return p
}

func TestTable(t *testing.T) {
	web := map[string]string{"app": "web"}
	s := svc("web", corev1.ServiceTypeNodePort, "10.96.0.10",
		corev1.ServicePort{Name: "http", Port: 80, NodePort: 30080, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")},
		corev1.ServicePort{Name: "raw", Port: 9000, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(9001)},
		corev1.ServicePort{Name: "same", Port: 7000, Protocol: corev1.ProtocolUDP})
	s.Spec.Selector = web
	s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
	terminating := pod("web-3", "10.88.0.3", true, web, corev1.ContainerPort{Name: "http", ContainerPort: 8080})
	terminating.DeletionTimestamp = &metav1.Time{}
	otherNS := pod("web-4", "10.88.0.4", true, web, corev1.ContainerPort{Name: "http", ContainerPort: 8080})
	otherNS.Namespace = "other"
	pods := []*corev1.Pod{
		pod("web-2", "10.88.0.2", true, web, corev1.ContainerPort{Name: "http", ContainerPort: 8081}),
		pod("web-1", "10.88.0.1", true, web, corev1.ContainerPort{Name: "http", ContainerPort: 8080}),
		pod("web-unready", "10.88.0.9", false, web, corev1.ContainerPort{Name: "http", ContainerPort: 8080}),
		pod("web-noip", "", true, web),
		pod("web-noport", "10.88.0.5", true, web), // no port named http: only the numeric ports
		pod("db", "10.88.0.6", true, map[string]string{"app": "db"}),
		terminating, otherNS,
	}
	got := Table([]*corev1.Service{s}, pods)
	ep := func(ip string, port int32, name string) api.Endpoint {
		return api.Endpoint{IP: ip, Port: port, Node: "n1", Pod: "default/" + name}
	}
	want := []api.Service{{
		Namespace: "default", Name: "web", Type: "NodePort", ClusterIP: "10.96.0.10", AffinitySeconds: 10800,
		Ports: []api.ServicePort{
			{Name: "http", Protocol: "TCP", Port: 80, NodePort: 30080, Endpoints: []api.Endpoint{ep("10.88.0.1", 8080, "web-1"), ep("10.88.0.2", 8081, "web-2")}},
			{Name: "raw", Protocol: "TCP", Port: 9000, Endpoints: []api.Endpoint{ep("10.88.0.1", 9001, "web-1"), ep("10.88.0.2", 9001, "web-2"), ep("10.88.0.5", 9001, "web-noport")}},
			{Name: "same", Protocol: "UDP", Port: 7000, Endpoints: []api.Endpoint{ep("10.88.0.1", 7000, "web-1"), ep("10.88.0.2", 7000, "web-2"), ep("10.88.0.5", 7000, "web-noport")}},
		},
	}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("table:\n got %+v\nwant %+v", got, want)
	}

	slices := EndpointSlices(got)
	if len(slices) != 4 {
		t.Fatalf("%d slices: want the http port split by target number (2) + raw + same", len(slices))
	}
	if s := slices[0]; s.Labels["kubernetes.io/service-name"] != "web" || *s.Ports[0].Port != 8080 || len(s.Endpoints) != 1 || s.Endpoints[0].Addresses[0] != "10.88.0.1" {
		t.Fatalf("first slice %+v", s)
	}
}

func TestTableWithoutSelectorHasNoEndpoints(t *testing.T) {
	s := svc("manual", corev1.ServiceTypeClusterIP, "10.96.0.3")
	s.Spec.Selector = nil
	got := Table([]*corev1.Service{s}, []*corev1.Pod{pod("x", "10.88.0.1", true, map[string]string{"app": "manual"})})
	if n := len(got[0].Ports[0].Endpoints); n != 0 {
		t.Fatalf("%d endpoints for a Service without selector", n)
	}
}

func TestApply(t *testing.T) {
	s := svc("a", corev1.ServiceTypeNodePort, "", corev1.ServicePort{Port: 80, Protocol: corev1.ProtocolTCP})
	got := Apply([]*corev1.Service{s}, Allocations{"ip/default/a": "10.96.0.1", "port/default/a/80/TCP": "30000"})
	if got[0].Spec.ClusterIP != "10.96.0.1" || got[0].Spec.Ports[0].NodePort != 30000 {
		t.Fatalf("Apply = %+v", got[0].Spec)
	}
	if s.Spec.ClusterIP != "" {
		t.Fatal("Apply changed its input")
	}
}
