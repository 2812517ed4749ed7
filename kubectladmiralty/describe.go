package kubectladmiralty

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/targets"
	"admiralty.io/multicluster-scheduler/targets/kubeconfig"
)

func newDescribeCommand(f *kubeFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "describe pod NAME",
		Short: "Show a proxy pod, its PodChaperon and its delegate side by side",
		Long: `Show a proxy pod of the cluster of the current or --context context beside
its PodChaperon and its delegate pod in the target it is bound to (read with
the credentials of that Target: its kubeconfig Secret, or this cluster's for
a self target), then the Events of all three, oldest first.`,
		Example: `  kubectl admiralty describe pod web-7d9c7 -n demo --context cluster1`,
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if args[0] != "pod" && args[0] != "pods" && args[0] != "po" {
				return fmt.Errorf("describe %s: only pods can be described", args[0])
			}
			return describePod(cmd.Context(), f, args[1], cmd.OutOrStdout())
		},
	}
	return cmd
}

func describePod(ctx context.Context, f *kubeFlags, name string, out io.Writer) error {
	cc := f.clientConfig()
	cfg, err := cc.ClientConfig()
	if err != nil {
		return err
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return err
	}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	proxy, err := kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if proxy.Labels[v1alpha1.LabelIsProxy] != "true" {
		return fmt.Errorf("pod %s/%s is not a proxy pod (no label %s=true)", ns, name, v1alpha1.LabelIsProxy)
	}
	cols := []column{{title: "PROXY", pod: proxy}}
	var notes []string
	var targetKube kubernetes.Interface
	if proxy.Spec.NodeName == "" {
		notes = append(notes, "The proxy is not bound to a virtual node yet: no target chosen.")
	} else {
		target, tcfg, self, err := targetOf(ctx, cfg, kube, proxy)
		if err != nil {
			notes = append(notes, err.Error())
		} else {
			targetKube, err = kubernetes.NewForConfig(tcfg)
			if err != nil {
				return err
			}
			var tmc versioned.Interface
			tmc, err = versioned.NewForConfig(tcfg)
			if err != nil {
				return err
			}
			if self {
				// The delegate stands for the chaperon (targets.SelfChaperons).
				tmc = targets.SelfChaperons(tmc, targetKube.CoreV1())
			}
			sel := metav1.ListOptions{LabelSelector: v1alpha1.LabelParentUID + "=" + string(proxy.UID)}
			chaperons, err := tmc.MulticlusterV1alpha1().PodChaperons(ns).List(ctx, sel)
			if err != nil {
				notes = append(notes, fmt.Sprintf("target %s: listing PodChaperons: %v", target, err))
			} else {
				for i := range chaperons.Items {
					if !self { // a self target's chaperon is its delegate
						cols = append(cols, column{title: "CHAPERON (" + target + ")", chaperon: &chaperons.Items[i]})
					}
				}
				// A source may not list the target's pods: each delegate is
				// read by its chaperon's name, which the target lets the
				// source read once it is the chaperon's delegate.
				for i := range chaperons.Items {
					d, note := delegateOf(ctx, targetKube, target, &chaperons.Items[i])
					if d != nil {
						cols = append(cols, column{title: "DELEGATE (" + target + ")", pod: d})
					}
					if note != "" {
						notes = append(notes, note)
					}
				}
			}
			if len(cols) == 1 {
				notes = append(notes, "No PodChaperon nor delegate in target "+target+" (deleted, or not sent yet).")
			}
		}
	}
	now := time.Now()
	w := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
	header := []string{""}
	for _, c := range cols {
		header = append(header, c.title)
	}
	fmt.Fprintln(w, strings.Join(header, "\t"))
	for _, field := range fields {
		line := []string{field.name}
		for _, c := range cols {
			line = append(line, orDash(field.get(c, now)))
		}
		fmt.Fprintln(w, strings.Join(line, "\t"))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(out, "\n"+n)
	}
	notes = nil
	// Events of the three, oldest first.
	type ev struct {
		at    time.Time
		where string
		e     corev1.Event
	}
	var evs []ev
	add := func(client kubernetes.Interface, where, kind, name string) {
		if client == nil {
			return
		}
		list, err := client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=" + kind + ",involvedObject.name=" + name})
		if err != nil {
			notes = append(notes, fmt.Sprintf("events of %s %s: %v", kind, name, err))
			return
		}
		for _, e := range list.Items {
			at := e.LastTimestamp.Time
			if at.IsZero() {
				at = e.EventTime.Time
			}
			evs = append(evs, ev{at: at, where: where, e: e})
		}
	}
	add(kube, "proxy", "Pod", proxy.Name)
	for _, c := range cols[1:] {
		if c.chaperon != nil {
			add(targetKube, "chaperon", "PodChaperon", c.chaperon.Name)
		} else if c.pod != nil {
			add(targetKube, "delegate", "Pod", c.pod.Name)
		}
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].at.Before(evs[j].at) })
	fmt.Fprintln(out, "\nEvents:")
	if len(evs) == 0 {
		fmt.Fprintln(out, "  <none>")
	} else {
		w = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "  OBJECT\tTYPE\tREASON\tAGE\tFROM\tMESSAGE")
		for _, e := range evs {
			from := e.e.Source.Component
			if from == "" {
				from = e.e.ReportingController
			}
			fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\t%s\n", e.where, e.e.Type, e.e.Reason, age(metav1.NewTime(e.at), now), from, strings.TrimSpace(e.e.Message))
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	// Events in the target are read with the Target's identity, which the
	// source role does not let read them.
	for _, n := range notes {
		fmt.Fprintln(out, "  ("+n+")")
	}
	return nil
}

// delegateOf reads the delegate of chaperon ch in the target, or says why
// it cannot.
// A delegate made less than about a second ago may not be readable yet:
// Forbidden is asked again for up to delegateWait.
func delegateOf(ctx context.Context, kube kubernetes.Interface, target string, ch *v1alpha1.PodChaperon) (*corev1.Pod, string) {
	pod, err := targets.GetDelegate(ctx, kube, ch.Namespace, ch.Name, delegateWait)
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Sprintf("target %s: no delegate %s/%s (not made yet, or deleted).", target, ch.Namespace, ch.Name)
	case apierrors.IsForbidden(err):
		return nil, fmt.Sprintf("target %s: delegate %s/%s not readable with the Target's credentials: a target lets a Source read its delegates about a second after they appear; later, ask the target's administrator whether this identity is a Source there (%v).",
			target, ch.Namespace, ch.Name, err)
	case err != nil:
		return nil, fmt.Sprintf("target %s: delegate %s/%s: %v", target, ch.Namespace, ch.Name, err)
	}
	if !targets.IsDelegateOf(pod, ch) {
		return nil, fmt.Sprintf("target %s: pod %s/%s is not the delegate of its PodChaperon (not controlled by it).", target, ch.Namespace, ch.Name)
	}
	return pod, ""
}

// delegateWait is how long describe waits for a target to let this source
// read a delegate it has just made (the target's delegates Role is written
// about a second after a delegate appears).
const delegateWait = 5 * time.Second

// column is the proxy, its chaperon or its delegate.
type column struct {
	title    string
	pod      *corev1.Pod
	chaperon *v1alpha1.PodChaperon
}

func (c column) meta() metav1.ObjectMeta {
	if c.chaperon != nil {
		return c.chaperon.ObjectMeta
	}
	return c.pod.ObjectMeta
}

func (c column) status() corev1.PodStatus {
	if c.chaperon != nil {
		return c.chaperon.Status.PodStatus
	}
	return c.pod.Status
}

func (c column) spec() corev1.PodSpec {
	if c.chaperon != nil {
		return c.chaperon.Spec
	}
	return c.pod.Spec
}

// node is where the pod is bound; a chaperon's status says where its
// delegate is.
func (c column) node() string {
	if c.chaperon != nil {
		return c.chaperon.Status.NodeName
	}
	return c.pod.Spec.NodeName
}

var fields = []struct {
	name string
	get  func(c column, now time.Time) string
}{
	{"Name", func(c column, _ time.Time) string { m := c.meta(); return m.Namespace + "/" + m.Name }},
	{"UID", func(c column, _ time.Time) string { return string(c.meta().UID) }},
	{"Age", func(c column, now time.Time) string { return age(c.meta().CreationTimestamp, now) }},
	{"Scheduler", func(c column, _ time.Time) string { return c.spec().SchedulerName }},
	{"Node", func(c column, _ time.Time) string { return c.node() }},
	{"Phase", func(c column, _ time.Time) string { return string(c.status().Phase) }},
	{"PodScheduled", func(c column, _ time.Time) string { return condition(c.status(), corev1.PodScheduled) }},
	{"Ready", func(c column, _ time.Time) string { return condition(c.status(), corev1.PodReady) }},
	{"IP", func(c column, _ time.Time) string { return c.status().PodIP }},
	{"Containers", func(c column, _ time.Time) string { return containers(c.status()) }},
	{"Deleting", func(c column, _ time.Time) string {
		if t := c.meta().DeletionTimestamp; t != nil {
			return "since " + t.UTC().Format(time.RFC3339)
		}
		return "no"
	}},
}

func condition(s corev1.PodStatus, t corev1.PodConditionType) string {
	for _, c := range s.Conditions {
		if c.Type == t {
			if c.Reason != "" {
				return string(c.Status) + " (" + c.Reason + ")"
			}
			return string(c.Status)
		}
	}
	return ""
}

func containers(s corev1.PodStatus) string {
	var parts []string
	for _, cs := range s.ContainerStatuses {
		state := "waiting"
		switch {
		case cs.State.Running != nil:
			state = "running"
		case cs.State.Terminated != nil:
			state = fmt.Sprintf("terminated (%d)", cs.State.Terminated.ExitCode)
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			state = cs.State.Waiting.Reason
		}
		parts = append(parts, fmt.Sprintf("%s=%s", cs.Name, state))
	}
	return strings.Join(parts, ",")
}

// targetOf finds the Target or ClusterTarget whose virtual node the proxy
// is bound to, and a client configuration for it: its kubeconfig Secret,
// or this cluster's for a self target (true).
func targetOf(ctx context.Context, local *rest.Config, kube kubernetes.Interface, proxy *corev1.Pod) (string, *rest.Config, bool, error) {
	mc, err := versioned.NewForConfig(local)
	if err != nil {
		return "", nil, false, err
	}
	node := proxy.Spec.NodeName
	var name string
	var self bool
	var secretNS, secretName, key string
	ts, err := mc.MulticlusterV1alpha1().Targets(proxy.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", nil, false, fmt.Errorf("listing Targets: %w", err)
	}
	for _, t := range ts.Items {
		if t.Status.VirtualNodeName == node {
			name, self = t.Namespace+"/"+t.Name, t.Spec.Self
			if s := t.Spec.KubeconfigSecret; s != nil {
				secretNS, secretName, key = t.Namespace, s.Name, s.Key
			}
		}
	}
	if name == "" {
		cts, err := mc.MulticlusterV1alpha1().ClusterTargets().List(ctx, metav1.ListOptions{})
		if err != nil {
			return "", nil, false, fmt.Errorf("listing ClusterTargets: %w", err)
		}
		for _, t := range cts.Items {
			if t.Status.VirtualNodeName == node {
				name, self = t.Name, t.Spec.Self
				if s := t.Spec.KubeconfigSecret; s != nil {
					secretNS, secretName, key = s.Namespace, s.Name, s.Key
				}
			}
		}
	}
	switch {
	case name == "":
		return "", nil, false, fmt.Errorf("no Target or ClusterTarget has the virtual node %s (deleted?)", node)
	case self:
		return name, rest.CopyConfig(local), true, nil
	case secretName == "":
		return "", nil, false, fmt.Errorf("%s has neither spec.self nor spec.kubeconfigSecret", name)
	}
	if key == "" {
		key = v1alpha1.DefaultKubeconfigSecretKey
	}
	secret, err := kube.CoreV1().Secrets(secretNS).Get(ctx, secretName, metav1.GetOptions{})
	if err != nil {
		return "", nil, false, fmt.Errorf("%s: its kubeconfig Secret %s/%s: %w", name, secretNS, secretName, err)
	}
	data := secret.Data[key]
	if len(data) == 0 {
		return "", nil, false, errors.New(name + ": its kubeconfig Secret has no key " + key)
	}
	// The Secret is a tenant's: data only, never a program run on this
	// machine or a file of it (the sources' own rules, without their
	// allow-lists, which this machine does not know).
	tcfg, err := kubeconfig.Parse(data, kubeconfig.Policy{AllowInsecureTLS: true, AllowProxyURL: true})
	if err != nil {
		return "", nil, false, fmt.Errorf("%s: its kubeconfig: %w", name, err)
	}
	return name, tcfg, false, nil
}
