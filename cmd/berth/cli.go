package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/yaml"

	"berth.dev/berth/api"
	"berth.dev/berth/api/client"
	"berth.dev/berth/reconciler/pki"
)

// client talks to the controller: plain HTTP for `berth up` on loopback,
// TLS with an admin certificate for `berth controller`.
func (g *globalFlags) client() (*client.Client, error) {
	if !strings.HasPrefix(g.server, "https://") {
		return client.New(g.server, nil), nil
	}
	var cfg *tls.Config
	var err error
	if g.caFile != "" || g.certFile != "" || g.keyFile != "" {
		cfg, err = pki.LoadClientTLS(g.caFile, g.certFile, g.keyFile)
	} else {
		cfg, err = pki.LoadAdminCredentials(pki.Dir(g.adminDataDir))
	}
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", g.server, err)
	}
	return client.NewTLS(g.server, cfg), nil
}

// call runs f with a client for the controller and a context bounded by
// client.DefaultTimeout: the shape of every one-shot CLI command.
func (g *globalFlags) call(cmd *cobra.Command, f func(ctx context.Context, c *client.Client) error) error {
	c, err := g.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), client.DefaultTimeout)
	defer cancel()
	return f(ctx, c)
}

func newStatusCommand(g *globalFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the applied revision, sync state and every Deployment's rollout",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.call(cmd, func(ctx context.Context, c *client.Client) error {
				s, err := c.Status(ctx)
				if err != nil {
					return err
				}
				switch output {
				case "json":
					return printJSON(cmd.OutOrStdout(), s)
				case "":
					printStatus(cmd.OutOrStdout(), s, time.Now())
					return nil
				default:
					return fmt.Errorf("--output %q: want json or nothing", output)
				}
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func printStatus(w io.Writer, s api.Status, now time.Time) {
	fmt.Fprintf(w, "Source:    %s\n", s.Source)
	if s.Applied != nil {
		fmt.Fprintf(w, "Revision:  %s %s\n", short(s.Applied.ID), s.Applied.Subject)
		if s.Applied.Author != "" {
			fmt.Fprintf(w, "           by %s, %s\n", s.Applied.Author, s.Applied.Time.Local().Format(time.RFC3339))
		}
	} else {
		fmt.Fprintf(w, "Revision:  (none applied yet)\n")
	}
	if s.Head != nil && (s.Applied == nil || s.Head.ID != s.Applied.ID) {
		fmt.Fprintf(w, "Head:      %s %s (not applied)\n", short(s.Head.ID), s.Head.Subject)
	}
	fmt.Fprintf(w, "Sync:      %s\n", s.Sync)
	if !s.LastFetch.IsZero() {
		fmt.Fprintf(w, "Fetched:   %s ago\n", age(s.LastFetch, now))
	}
	if s.LastError != "" {
		fmt.Fprintf(w, "Error:     %s\n", indent(s.LastError, "           "))
	}
	for _, warn := range s.Warnings {
		fmt.Fprintf(w, "Warning:   %s\n", warn)
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "DEPLOYMENT\tDESIRED\tUPDATED\tREADY\tAVAILABLE\tREVISION\tHEALTH\tREASON")
	for _, d := range s.Deployments {
		fmt.Fprintf(tw, "%s/%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", d.Namespace, d.Name, d.Desired, d.Updated, d.Ready, d.Available, d.Revision, d.Health, d.Reason)
	}
	tw.Flush()
	for _, d := range s.Deployments {
		if r := d.RolledBackFrom; r != nil {
			fmt.Fprintf(w, "\n%s/%s was rolled back automatically: commit %s %q brought a template that failed.\n", d.Namespace, d.Name, short(r.ID), r.Subject)
			fmt.Fprintf(w, "berth will not try that template again until a commit changes it (git revert %s).\n", short(r.ID))
		}
	}
	if len(s.Nodes) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
		fmt.Fprintln(tw, "NODE\tSTATUS\tPODS\tLAST HEARTBEAT")
		for _, n := range s.Nodes {
			st := "Ready"
			if !n.Ready {
				st = "NotReady"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s ago\n", n.Name, st, n.Pods, age(n.LastHeartbeat, now))
		}
		tw.Flush()
	}
}

func newSyncCommand(g *globalFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "sync",
		Short: "Fetch the source now and apply its newest revision",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.call(cmd, func(ctx context.Context, c *client.Client) error {
				res, err := c.Sync(ctx)
				if err != nil {
					return err
				}
				if res.Applied != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "applied %s %s\n", short(res.Applied.ID), res.Applied.Subject)
				}
				if res.Error != "" {
					return fmt.Errorf("%s", res.Error)
				}
				return nil
			})
		},
	}
}

func newHistoryCommand(g *globalFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "history",
		Short: "List the revisions berth has seen, with their outcome",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.call(cmd, func(ctx context.Context, c *client.Client) error {
				h, err := c.History(ctx)
				if err != nil {
					return err
				}
				if output == "json" {
					return printJSON(cmd.OutOrStdout(), h)
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 3, ' ', 0)
				fmt.Fprintln(tw, "TIME\tREVISION\tOUTCOME\tSUBJECT\tMESSAGE")
				for _, e := range h {
					msg, _, _ := strings.Cut(e.Message, "\n")
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Time.Local().Format(time.DateTime), short(e.Revision.ID), e.Outcome, e.Revision.Subject, msg)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

type getOptions struct {
	namespace     string
	allNamespaces bool
	output        string
}

func newGetCommand(g *globalFlags) *cobra.Command {
	o := &getOptions{}
	cmd := &cobra.Command{
		Use:   "get pods|deployments|replicasets|services|endpointslices|configmaps|secrets|nodes",
		Short: "List objects the way kubectl does",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			resource, ok := resourceAliases[args[0]]
			if !ok {
				return fmt.Errorf("unknown resource %q: want pods, deployments, replicasets, services, endpointslices, configmaps, secrets or nodes", args[0])
			}
			switch o.output {
			case "", "wide", "json", "yaml":
			default:
				return fmt.Errorf("--output %q: want wide, json or yaml", o.output)
			}
			ns := o.namespace
			if o.allNamespaces {
				ns = ""
			}
			return g.call(cmd, func(ctx context.Context, c *client.Client) error {
				return getResource(ctx, c, cmd.OutOrStdout(), resource, ns, o, time.Now())
			})
		},
	}
	cmd.Flags().StringVarP(&o.namespace, "namespace", "n", "default", "namespace")
	cmd.Flags().BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "list objects in every namespace")
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "output format: wide, json or yaml")
	return cmd
}

var resourceAliases = map[string]string{
	"pod": "pods", "pods": "pods", "po": "pods",
	"deployment": "deployments", "deployments": "deployments", "deploy": "deployments",
	"replicaset": "replicasets", "replicasets": "replicasets", "rs": "replicasets",
	"configmap": "configmaps", "configmaps": "configmaps", "cm": "configmaps",
	"secret": "secrets", "secrets": "secrets",
	"service": "services", "services": "services", "svc": "services",
	"node": "nodes", "nodes": "nodes", "no": "nodes",
	"endpointslice": "endpointslices", "endpointslices": "endpointslices", "endpoints": "endpointslices", "ep": "endpointslices",
}

func getResource(ctx context.Context, c *client.Client, w io.Writer, resource, ns string, o *getOptions, now time.Time) error {
	var (
		items  any
		header []string
		rows   func() [][]string
	)
	wide := o.output == "wide"
	switch resource {
	case "pods":
		var pods []corev1.Pod
		items = &pods
		header = []string{"NAME", "READY", "STATUS", "RESTARTS", "AGE"}
		if wide {
			header = append(header, "IP", "NODE")
		}
		rows = func() [][]string {
			var out [][]string
			for _, p := range pods {
				row := []string{p.Namespace, p.Name, podReadyCount(p), podStatusText(p), podRestarts(p), age(p.CreationTimestamp.Time, now)}
				if wide {
					row = append(row, orNone(p.Status.PodIP), orNone(p.Spec.NodeName))
				}
				out = append(out, row)
			}
			return out
		}
	case "deployments":
		var ds []appsv1.Deployment
		items = &ds
		header = []string{"NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"}
		if wide {
			header = append(header, "CONTAINERS", "IMAGES", "SELECTOR")
		}
		rows = func() [][]string {
			var out [][]string
			for _, d := range ds {
				row := []string{d.Namespace, d.Name, fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, replicas(d.Spec.Replicas)),
					fmt.Sprint(d.Status.UpdatedReplicas), fmt.Sprint(d.Status.AvailableReplicas), age(d.CreationTimestamp.Time, now)}
				if wide {
					names, images := containerColumns(d.Spec.Template.Spec)
					row = append(row, names, images, selectorText(d.Spec.Selector.MatchLabels))
				}
				out = append(out, row)
			}
			return out
		}
	case "replicasets":
		var rss []appsv1.ReplicaSet
		items = &rss
		header = []string{"NAME", "DESIRED", "CURRENT", "READY", "AGE"}
		if wide {
			header = append(header, "CONTAINERS", "IMAGES", "SELECTOR")
		}
		rows = func() [][]string {
			var out [][]string
			for _, rs := range rss {
				row := []string{rs.Namespace, rs.Name, fmt.Sprint(replicas(rs.Spec.Replicas)), fmt.Sprint(rs.Status.Replicas),
					fmt.Sprint(rs.Status.ReadyReplicas), age(rs.CreationTimestamp.Time, now)}
				if wide {
					names, images := containerColumns(rs.Spec.Template.Spec)
					row = append(row, names, images, selectorText(rs.Spec.Selector.MatchLabels))
				}
				out = append(out, row)
			}
			return out
		}
	case "services":
		var svcs []corev1.Service
		var eps []discoveryv1.EndpointSlice
		items = &svcs
		header = []string{"NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"}
		if wide {
			header = append(header, "SELECTOR", "ENDPOINTS")
			if err := c.List(ctx, "endpointslices", ns, &eps); err != nil {
				return err
			}
		}
		rows = func() [][]string {
			byName := map[string][]discoveryv1.EndpointSlice{}
			for _, e := range eps {
				k := e.Namespace + "/" + e.Labels[discoveryv1.LabelServiceName]
				byName[k] = append(byName[k], e)
			}
			var out [][]string
			for _, s := range svcs {
				row := []string{s.Namespace, s.Name, string(s.Spec.Type), orNone(s.Spec.ClusterIP), "<none>", servicePorts(s), age(s.CreationTimestamp.Time, now)}
				if wide {
					row = append(row, orNone(selectorText(s.Spec.Selector)), endpointsText(byName[s.Namespace+"/"+s.Name]))
				}
				out = append(out, row)
			}
			return out
		}
	case "endpointslices":
		var eps []discoveryv1.EndpointSlice
		items = &eps
		header = []string{"NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"}
		rows = func() [][]string {
			var out [][]string
			for _, e := range eps {
				var ports []string
				for _, p := range e.Ports {
					ports = append(ports, fmt.Sprint(*p.Port))
				}
				var addrs []string
				for _, ep := range e.Endpoints {
					addrs = append(addrs, ep.Addresses...)
				}
				out = append(out, []string{e.Namespace, e.Name, string(e.AddressType), strings.Join(ports, ","), orNone(strings.Join(addrs, ",")), age(e.CreationTimestamp.Time, now)})
			}
			return out
		}
	case "nodes":
		var nodes []api.NodeInfo
		items = &nodes
		header = []string{"NAME", "STATUS", "CPU", "MEMORY", "CPU-REQ", "MEM-REQ", "PODS", "HEARTBEAT"}
		if wide {
			header = append(header, "ADDRESS", "POD-SUBNET", "LABELS")
		}
		rows = func() [][]string {
			var out [][]string
			for _, n := range nodes {
				status := "Ready"
				if !n.Ready {
					status = "NotReady"
				}
				if n.Unschedulable {
					status += ",SchedulingDisabled"
				}
				row := []string{"", n.Name, status, quantity(n.Capacity, corev1.ResourceCPU), quantity(n.Capacity, corev1.ResourceMemory),
					allocated(n.Allocated, corev1.ResourceCPU), allocated(n.Allocated, corev1.ResourceMemory), fmt.Sprint(n.Pods), age(n.LastHeartbeat, now)}
				if wide {
					addr := ""
					if len(n.Addresses) > 0 {
						addr = n.Addresses[0]
					}
					row = append(row, orNone(addr), orNone(n.PodSubnet), orNone(selectorText(n.Labels)))
				}
				out = append(out, row)
			}
			return out
		}
	case "configmaps":
		var cms []corev1.ConfigMap
		items = &cms
		header = []string{"NAME", "DATA", "AGE"}
		rows = func() [][]string {
			var out [][]string
			for _, cm := range cms {
				out = append(out, []string{cm.Namespace, cm.Name, fmt.Sprint(len(cm.Data) + len(cm.BinaryData)), age(cm.CreationTimestamp.Time, now)})
			}
			return out
		}
	case "secrets":
		var ss []corev1.Secret
		items = &ss
		header = []string{"NAME", "TYPE", "DATA", "AGE"}
		rows = func() [][]string {
			var out [][]string
			for _, s := range ss {
				out = append(out, []string{s.Namespace, s.Name, string(s.Type), fmt.Sprint(len(s.Data)), age(s.CreationTimestamp.Time, now)})
			}
			return out
		}
	}
	if err := c.List(ctx, resource, ns, items); err != nil {
		return err
	}
	switch o.output {
	case "json", "yaml":
		list := map[string]any{"apiVersion": "v1", "kind": "List", "items": items}
		if o.output == "json" {
			return printJSON(w, list)
		}
		data, err := yaml.Marshal(list)
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	all := rows()
	if len(all) == 0 {
		if ns == "" || resource == "nodes" {
			fmt.Fprintf(os.Stderr, "No resources found\n")
		} else {
			fmt.Fprintf(os.Stderr, "No resources found in %s namespace.\n", ns)
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	namespaced := resource != "nodes"
	if ns == "" && namespaced {
		header = append([]string{"NAMESPACE"}, header...)
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, row := range all {
		if ns != "" || !namespaced {
			row = row[1:] // namespace column only with -A
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

// servicePorts is kubectl's PORT(S) column: 80:30080/TCP,443/TCP.
func servicePorts(s corev1.Service) string {
	var parts []string
	for _, p := range s.Spec.Ports {
		if p.NodePort != 0 {
			parts = append(parts, fmt.Sprintf("%d:%d/%s", p.Port, p.NodePort, p.Protocol))
		} else {
			parts = append(parts, fmt.Sprintf("%d/%s", p.Port, p.Protocol))
		}
	}
	return orNone(strings.Join(parts, ","))
}

// endpointsText is kubectl's ENDPOINTS column: up to three ip:port, then
// "+ N more...".
func endpointsText(slices []discoveryv1.EndpointSlice) string {
	var all []string
	for _, s := range slices {
		for _, e := range s.Endpoints {
			for _, a := range e.Addresses {
				for _, p := range s.Ports {
					all = append(all, fmt.Sprintf("%s:%d", a, *p.Port))
				}
			}
		}
	}
	if len(all) > 3 {
		return strings.Join(all[:3], ",") + fmt.Sprintf(" + %d more...", len(all)-3)
	}
	return orNone(strings.Join(all, ","))
}

func quantity(l corev1.ResourceList, name corev1.ResourceName) string {
	if q, ok := l[name]; ok {
		return q.String()
	}
	return "<none>"
}

// allocated is quantity for sums, where nothing means zero.
func allocated(l corev1.ResourceList, name corev1.ResourceName) string {
	if q, ok := l[name]; ok {
		return q.String()
	}
	return "0"
}

func podReadyCount(p corev1.Pod) string {
	ready := 0
	for _, cs := range p.Status.ContainerStatuses {
		if cs.Ready {
			ready++
		}
	}
	return fmt.Sprintf("%d/%d", ready, len(p.Spec.Containers))
}

// podStatusText is kubectl's STATUS column: a waiting or terminated reason
// beats the phase.
func podStatusText(p corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "Terminating"
	}
	reason := string(p.Status.Phase)
	if p.Status.Reason != "" {
		reason = p.Status.Reason
	}
	for _, cs := range p.Status.ContainerStatuses {
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			reason = cs.State.Waiting.Reason
		case cs.State.Terminated != nil && cs.State.Terminated.Reason != "":
			reason = cs.State.Terminated.Reason
		}
	}
	if reason == "" {
		reason = "Pending"
	}
	return reason
}

func podRestarts(p corev1.Pod) string {
	n := int32(0)
	for _, cs := range p.Status.ContainerStatuses {
		n += cs.RestartCount
	}
	return fmt.Sprint(n)
}

func containerColumns(spec corev1.PodSpec) (names, images string) {
	var n, i []string
	for _, c := range spec.Containers {
		n = append(n, c.Name)
		i = append(i, c.Image)
	}
	return strings.Join(n, ","), strings.Join(i, ",")
}

func selectorText(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, ",")
}

func replicas(r *int32) int32 {
	if r == nil {
		return 1
	}
	return *r
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// age formats a duration the way kubectl does: 45s, 12m, 5h, 3d.
func age(t, now time.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func indent(s, prefix string) string { return strings.ReplaceAll(s, "\n", "\n"+prefix) }

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
