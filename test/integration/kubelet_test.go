package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/rest"

	"admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
)

// kubectl logs, exec, attach and port-forward on a proxy pod in cluster1
// reach its delegate in cluster2: cluster1's API server calls the virtual
// node's kubelet endpoint (cluster1's delegator), which relays to cluster2's
// API server, which calls the kwok node the delegate runs on. What kwok
// answers there (hack/sandbox/kwok-debugging.yaml, and a Logs object this
// test makes for the delegate) is what kubectl must print in cluster1.
func TestKubelet(t *testing.T) {
	c1, c2 := sandbox.Clusters[0], sandbox.Clusters[1]
	ctx := testContext(t, 6*time.Minute)
	requireKubeletSandbox(t, c1, c2)
	ns := "kubelet-" + rand.String(5)
	createNamespace(t, c1, ns)
	createNamespace(t, c2, ns)

	// Getting Started between cluster1 (source) and cluster2 (target).
	applySource(t, c2, ns)
	exchangeWithKubectlAndJq(t, ctx, ns, "cluster2", "c2")
	kubectlApply(t, c1, fmt.Sprintf(`
apiVersion: multicluster.admiralty.io/v1alpha1
kind: Target
metadata:
  name: c2
  namespace: %s
spec:
  kubeconfigSecret:
    name: c2
`, ns))
	vnode := "admiralty-namespace-" + ns + "-c2"
	waitTargetReady(ctx, t, versioned.NewForConfigOrDie(c1.Config), ns, "c2")
	waitNodeReady(ctx, t, c1, vnode)

	// The virtual node says where its kubelet is: the sandbox delegator's
	// --kubelet-advertise-address and --kubelet-addr port.
	eventually(ctx, t, "virtual node advertises the kubelet endpoint", func(ctx context.Context) (bool, string, error) {
		n, err := c1.Client.CoreV1().Nodes().Get(ctx, vnode, metav1.GetOptions{})
		if err != nil {
			return false, "", err
		}
		got := fmt.Sprintf("addresses %v, kubelet port %d", n.Status.Addresses, n.Status.DaemonEndpoints.KubeletEndpoint.Port)
		want := fmt.Sprintf("addresses %v, kubelet port %d", []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}, c1.KubeletPort)
		return got == want, got + ", want " + want, nil
	})

	labelNamespace(t, c1, ns)
	kubectlApply(t, c1, fmt.Sprintf(`
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: %s
  annotations:
    multicluster.admiralty.io/elect: ""
spec:
  nodeSelector:
    topology.kubernetes.io/region: eu
  containers:
  - name: main
    image: nginx
    ports:
    - containerPort: 80
`, ns))
	proxy, delegate := waitProxyAndDelegate(ctx, t, c1, c2, ns, "web")
	if proxy.Spec.NodeName != vnode {
		t.Fatalf("proxy on node %q, want %q", proxy.Spec.NodeName, vnode)
	}
	t.Logf("proxy %s/%s on %s, delegate %s/%s in cluster2", ns, proxy.Name, proxy.Spec.NodeName, ns, delegate.Name)

	// The delegate's own logs, which only kwok in cluster2 knows: a line
	// older than an hour and two recent ones, and a previous container's.
	dir := t.TempDir()
	now := time.Now().UTC()
	old := time.Date(2016, 10, 6, 0, 0, 0, 0, time.UTC)
	token := rand.String(8)
	lines := []struct {
		at   time.Time
		text string
	}{
		{old, "started " + token},
		{now.Add(-2 * time.Minute), "serving " + token},
		{now.Add(-time.Minute), "ready " + token},
	}
	var current strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&current, "%s stdout F %s\n", l.at.Format(rfc3339NanoFixed), l.text)
	}
	writeFile(t, filepath.Join(dir, "current.log"), current.String())
	writeFile(t, filepath.Join(dir, "previous.log"), fmt.Sprintf("%s stdout F crashed %s\n", old.Format(rfc3339NanoFixed), token))
	kubectlApply(t, c2, fmt.Sprintf(`
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Logs
metadata:
  name: %s
  namespace: %s
spec:
  logs:
  - logsFile: %s
    previousLogsFile: %s
    follow: true
`, delegate.Name, ns, filepath.Join(dir, "current.log"), filepath.Join(dir, "previous.log")))

	all := fmt.Sprintf("started %[1]s\nserving %[1]s\nready %[1]s\n", token)
	// kwok reads its Logs objects through an informer: the first answer
	// may still be the sandbox-wide one.
	eventually(ctx, t, "kubectl logs on the proxy prints the delegate's log", func(ctx context.Context) (bool, string, error) {
		out, err := kubectl(ctx, c1, "-n", ns, "logs", "web")
		return err == nil && out == all, fmt.Sprintf("%q, %v", out, err), nil
	})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{name: "the container named with -c", args: []string{"-c", "main"}, want: all},
		{name: "--tail 1 is the last line", args: []string{"--tail", "1"}, want: "ready " + token + "\n"},
		{name: "--since 1h leaves out the old line", args: []string{"--since", "1h"}, want: fmt.Sprintf("serving %[1]s\nready %[1]s\n", token)},
		{name: "--timestamps prefixes each line with its time", args: []string{"--timestamps", "--tail", "2"},
			want: fmt.Sprintf("%s serving %s\n%s ready %s\n", lines[1].at.Format(rfc3339NanoFixed), token, lines[2].at.Format(rfc3339NanoFixed), token)},
		{name: "--previous is the previous container's log", args: []string{"--previous"}, want: "crashed " + token + "\n"},
	} {
		t.Run("logs "+tc.name, func(t *testing.T) {
			out, err := kubectl(ctx, c1, append([]string{"-n", ns, "logs", "web"}, tc.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, out); diff != "" {
				t.Errorf("kubectl logs %s (-want +got):\n%s", strings.Join(tc.args, " "), diff)
			}
		})
	}

	t.Run("logs -f streams the log", func(t *testing.T) {
		line := firstLine(ctx, t, c1, "-n", ns, "logs", "-f", "web")
		if line != "started "+token {
			t.Errorf("first line of kubectl logs -f = %q, want %q", line, "started "+token)
		}
	})

	t.Run("attach streams what the container writes from then on", func(t *testing.T) {
		// kwok's attach follows a log file from its end, as an attach sees
		// only new output: lines are appended until kubectl prints one.
		attachLog := filepath.Join(dir, "attach.log")
		writeFile(t, attachLog, "")
		kubectlApply(t, c2, fmt.Sprintf(`
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Attach
metadata:
  name: %s
  namespace: %s
spec:
  attaches:
  - logsFile: %s
`, delegate.Name, ns, attachLog))
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for {
				select {
				case <-stop:
					return
				case <-time.After(500 * time.Millisecond):
				}
				f, err := os.OpenFile(attachLog, os.O_APPEND|os.O_WRONLY, 0)
				if err != nil {
					return
				}
				fmt.Fprintf(f, "%s stdout F attached %s\n", time.Now().UTC().Format(rfc3339NanoFixed), token)
				f.Close()
			}
		}()
		line := firstLine(ctx, t, c1, "-n", ns, "attach", "web", "-c", "main")
		if line != "attached "+token {
			t.Errorf("first line of kubectl attach = %q, want %q", line, "attached "+token)
		}
	})

	t.Run("exec runs the command where the delegate runs", func(t *testing.T) {
		out, err := kubectl(ctx, c1, "-n", ns, "exec", "web", "--", "echo", "hi")
		if err != nil || out != "hi\n" {
			t.Errorf("kubectl exec -- echo hi = %q, %v; want \"hi\\n\"", out, err)
		}
		// The sandbox's ClusterExec runs commands with KWOK_CLUSTER set to
		// the cluster kwok plays.
		out, err = kubectl(ctx, c1, "-n", ns, "exec", "web", "-c", "main", "--", "printenv", "KWOK_CLUSTER")
		if err != nil || out != "cluster2\n" {
			t.Errorf("kubectl exec -- printenv KWOK_CLUSTER = %q, %v; want \"cluster2\\n\"", out, err)
		}
	})

	t.Run("exec -i passes stdin", func(t *testing.T) {
		// head, not cat: kwok does not close a command's stdin when the
		// client's ends (nor does it over a direct kubectl exec).
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(sandbox.Bin, "kubectl"), "--kubeconfig", c1.AdminKubeconfig, "-n", ns, "exec", "-i", "web", "--", "head", "-n", "1")
		cmd.Stdin = strings.NewReader("from stdin " + token + "\n")
		out, err := cmd.CombinedOutput()
		if err != nil || string(out) != "from stdin "+token+"\n" {
			t.Errorf("kubectl exec -i -- head -n 1 = %q, %v", out, err)
		}
	})

	t.Run("port-forward connects to the delegate's port", func(t *testing.T) {
		pfCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		cmd := exec.CommandContext(pfCtx, filepath.Join(sandbox.Bin, "kubectl"), "--kubeconfig", c1.AdminKubeconfig, "-n", ns, "port-forward", "--address", "127.0.0.1", "pod/web", ":80")
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cancel(); _ = cmd.Wait() }()
		// "Forwarding from 127.0.0.1:PORT -> 80"
		forwarding := regexp.MustCompile(`Forwarding from (127\.0\.0\.1:\d+) -> 80`)
		scanner := bufio.NewScanner(stdout)
		var local string
		for local == "" && scanner.Scan() {
			if m := forwarding.FindStringSubmatch(scanner.Text()); m != nil {
				local = m[1]
			}
		}
		if local == "" {
			t.Fatalf("kubectl port-forward did not say where it listens: %s", stderr.String())
		}
		go func() { _, _ = io.Copy(io.Discard, stdout) }()
		// The sandbox's ClusterPortForward answers one HTTP request.
		conn, err := net.DialTimeout("tcp", local, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		// Read up to the answer, not to the end: the stream is not closed
		// when kwok's command exits (nor over a direct port-forward).
		var resp strings.Builder
		r := bufio.NewReader(conn)
		for body := false; ; {
			line, err := r.ReadString('\n')
			resp.WriteString(line)
			if err != nil || body {
				break
			}
			body = line == "\r\n"
		}
		if !strings.HasSuffix(resp.String(), "\r\n\r\nhello from cluster2\n") {
			t.Errorf("through the forwarded port: %q (kubectl: %s)", resp.String(), stderr.String())
		}
	})

	t.Run("the endpoint authenticates and authorizes its callers", func(t *testing.T) {
		url := fmt.Sprintf("https://127.0.0.1:%d/containerLogs/%s/web/main", c1.KubeletPort, ns)
		// No credentials at all.
		if code, body := kubeletGet(t, url, nil, ""); code != http.StatusUnauthorized {
			t.Errorf("without credentials: %d %q, want 401", code, body)
		}
		// A service account that may not proxy to nodes.
		tr, err := c1.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "default", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if code, body := kubeletGet(t, url, nil, tr.Status.Token); code != http.StatusForbidden || !strings.Contains(body, "nodes") {
			t.Errorf("as system:serviceaccount:%s:default: %d %q, want 403 on nodes/proxy", ns, code, body)
		}
		// The cluster admin's client certificate, like the API server's.
		tlsConfig, err := rest.TLSConfigFor(c1.Config)
		if err != nil {
			t.Fatal(err)
		}
		if code, body := kubeletGet(t, url, tlsConfig, ""); code != http.StatusOK || body != all {
			t.Errorf("with the admin's client certificate: %d %q, want 200 and the delegate's log", code, body)
		}
	})

	// Clean up while the target is connected, so that the delegate goes
	// with its proxy.
	if err := c1.Client.CoreV1().Pods(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(ctx, t, "the delegate goes with its proxy", func(ctx context.Context) (bool, string, error) {
		_, err := c2.Client.CoreV1().Pods(ns).Get(ctx, delegate.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err), nil
	})
}

// requireKubeletSandbox fails at once, saying why, on a sandbox whose
// clusters were created before hack/sandbox.sh gave kube-apiserver a
// kubelet client certificate and enabled kwok's logs and exec kinds (both
// apply at creation only), rather than after minutes of Unauthorized.
func requireKubeletSandbox(t *testing.T, src, dst *Cluster) {
	t.Helper()
	conf, err := os.ReadFile(filepath.Join(src.KwokWorkdir, "kwok.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, crdErr := dst.Client.Discovery().ServerResourcesForGroupVersion("kwok.x-k8s.io/v1alpha1")
	if !strings.Contains(string(conf), "--kubelet-client-certificate=") || crdErr != nil {
		t.Fatalf("this sandbox's clusters predate the kubelet endpoint's settings (kube-apiserver --kubelet-client-certificate: %v; kwok's kinds in %s: %v): remove it (hack/sandbox.sh down with its SANDBOX_* variables) and run again",
			strings.Contains(string(conf), "--kubelet-client-certificate="), dst.Context, crdErr)
	}
}

// rfc3339NanoFixed is how the kubelet prints log timestamps (and how CRI
// log files write them).
const rfc3339NanoFixed = "2006-01-02T15:04:05.000000000Z07:00"

// waitProxyAndDelegate waits until the proxy pod name in cluster src is
// Running on a virtual node and its delegate (by parent-uid label) Running
// in cluster dst.
func waitProxyAndDelegate(ctx context.Context, t *testing.T, src, dst *Cluster, ns, name string) (*corev1.Pod, *corev1.Pod) {
	t.Helper()
	var proxy, delegate *corev1.Pod
	eventually(ctx, t, "proxy "+name+" and its delegate Running", func(ctx context.Context) (bool, string, error) {
		p, err := src.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err.Error(), nil
		}
		if p.Labels[v1alpha1.LabelIsProxy] != "true" {
			return false, "", fmt.Errorf("pod %s is not a proxy (labels %v): is the webhook running?", name, p.Labels)
		}
		list, err := dst.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: v1alpha1.LabelParentUID + "=" + string(p.UID)})
		if err != nil {
			return false, "", err
		}
		msg := fmt.Sprintf("proxy %s on %q, %d delegates", p.Status.Phase, p.Spec.NodeName, len(list.Items))
		if p.Status.Phase != corev1.PodRunning || len(list.Items) != 1 || list.Items[0].Status.Phase != corev1.PodRunning {
			return false, msg, nil
		}
		proxy, delegate = p, &list.Items[0]
		return true, msg, nil
	})
	return proxy, delegate
}

// kubectl runs bin/kubectl against cluster c and returns its standard
// output; the error carries its standard error.
func kubectl(ctx context.Context, c *Cluster, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(sandbox.Bin, "kubectl"), append([]string{"--kubeconfig", c.AdminKubeconfig}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// firstLine runs a kubectl command that streams (logs -f, attach), reads its
// first line of output and stops it.
func firstLine(ctx context.Context, t *testing.T, c *Cluster, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(sandbox.Bin, "kubectl"), append([]string{"--kubeconfig", c.AdminKubeconfig}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("kubectl %s: no first line: %v (stderr: %s)", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSuffix(line, "\n")
}

// kubeletGet calls the kubelet endpoint directly, as the API server would,
// with a client certificate (tlsConfig) or a bearer token, or neither. The
// endpoint's certificate is self-signed: it is not verified, as the API
// server does not verify kubelets without --kubelet-certificate-authority.
func kubeletGet(t *testing.T, url string, tlsConfig *tls.Config, token string) (int, string) {
	t.Helper()
	if tlsConfig == nil {
		tlsConfig = &tls.Config{}
	}
	tlsConfig = tlsConfig.Clone()
	tlsConfig.InsecureSkipVerify = true
	tlsConfig.RootCAs = nil
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
