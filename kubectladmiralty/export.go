package kubectladmiralty

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/targets/kubeconfig"
)

// labelTokenInvalidSince is set by kube-controller-manager on a legacy
// token it no longer accepts.
const labelTokenInvalidSince = "kubernetes.io/legacy-token-invalid-since"

type exportOptions struct {
	*kubeFlags
	as               string
	server           string
	secretNamespace  string
	allowInsecureTLS bool
}

func newExportCommand(f *kubeFlags) *cobra.Command {
	o := &exportOptions{kubeFlags: f}
	cmd := &cobra.Command{
		Use:   "export SERVICE_ACCOUNT",
		Short: "Print a kubeconfig Secret that authenticates as a service account of this cluster",
		Long: `Print, as YAML, a Secret whose "config" key holds a kubeconfig for the
service account SERVICE_ACCOUNT (in --namespace) of the cluster of the current
or --context context: the server and CA certificate of that context's cluster,
and the token of the service account's token Secret (the one a Source or
ClusterSource made, listed in the service account's .secrets).

Apply it in the source cluster and refer to it from a Target or ClusterTarget.
The server must be reachable from the source cluster's pods: override it with
--server when the kubeconfig's address is only valid from this machine.`,
		Example: `  # Source c1 in cluster2 made service account c1; give cluster1 its credentials as Secret c2:
  kubectl admiralty export c1 --context cluster2 -n "$NAMESPACE" --as c2 \
    | kubectl --context cluster1 -n "$NAMESPACE" apply -f -`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return o.run(cmd.Context(), args[0], cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&o.as, "as", "", "name of the Secret (default: SERVICE_ACCOUNT)")
	fl.StringVar(&o.server, "server", "", "API server address to write in the kubeconfig (default: the context's cluster's)")
	fl.StringVar(&o.secretNamespace, "secret-namespace", "", "namespace of the Secret (default: none, so that kubectl -n NS apply chooses)")
	fl.BoolVar(&o.allowInsecureTLS, "allow-insecure-tls", false, "keep the context's insecure-skip-tls-verify; sources refuse such a kubeconfig unless their admin allows it (delegator --target-allow-insecure-tls, --cluster-target-allow-insecure-tls)")
	return cmd
}

func (o *exportOptions) run(ctx context.Context, saName string, out io.Writer) error {
	secretName := o.as
	if secretName == "" {
		secretName = saName
	}
	if errs := validation.IsDNS1123Subdomain(secretName); len(errs) > 0 {
		return fmt.Errorf("secret name %q (--as): %s", secretName, strings.Join(errs, "; "))
	}
	if o.secretNamespace != "" {
		if errs := validation.IsDNS1123Label(o.secretNamespace); len(errs) > 0 {
			return fmt.Errorf("--secret-namespace %q: %s", o.secretNamespace, strings.Join(errs, "; "))
		}
	}

	cc := o.clientConfig()
	raw, err := cc.RawConfig()
	if err != nil {
		return fmt.Errorf("reading kubeconfig: %w", err)
	}
	contextName := o.context
	if contextName == "" {
		contextName = raw.CurrentContext
	}
	kctx, ok := raw.Contexts[contextName]
	if !ok {
		return fmt.Errorf("context %q is not in the kubeconfig", contextName)
	}
	cluster, ok := raw.Clusters[kctx.Cluster]
	if !ok {
		return fmt.Errorf("cluster %q of context %q is not in the kubeconfig", kctx.Cluster, contextName)
	}
	ns, _, err := cc.Namespace()
	if err != nil {
		return err
	}
	restConfig, err := cc.ClientConfig()
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}

	sa, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, saName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("service account %s/%s not found in the cluster of context %q: create a Source (or ClusterSource) for it there, whose controller makes it, or check --namespace and --context", ns, saName, contextName)
	} else if err != nil {
		return fmt.Errorf("service account %s/%s: %w", ns, saName, err)
	}
	secrets, err := tokenSecretsOf(ctx, client, sa)
	if err != nil {
		return err
	}
	token, err := pickToken(sa, secrets)
	if err != nil {
		return err
	}
	kc, err := kubeconfigFor(contextName, kctx.Cluster, cluster, o.server, sa, token, o.allowInsecureTLS)
	if err != nil {
		return err
	}
	manifest, err := secretManifest(secretName, o.secretNamespace, kc)
	if err != nil {
		return err
	}
	_, err = out.Write(manifest)
	return err
}

// tokenSecretsOf returns the Secrets that may hold sa's token: those its
// .secrets names first, in order (what the seed's exchange reads), then,
// only if none of those has a token, the token Secrets of its namespace,
// newest first (a token Secret made by hand is not always listed).
func tokenSecretsOf(ctx context.Context, client kubernetes.Interface, sa *corev1.ServiceAccount) ([]corev1.Secret, error) {
	var out []corev1.Secret
	seen := map[string]bool{}
	for _, ref := range sa.Secrets {
		s, err := client.CoreV1().Secrets(sa.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("secret %s/%s of service account %s: %w", sa.Namespace, ref.Name, sa.Name, err)
		}
		out = append(out, *s)
		seen[s.Name] = true
	}
	if _, err := pickToken(sa, out); err == nil {
		return out, nil
	}
	list, err := client.CoreV1().Secrets(sa.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: "type=" + string(corev1.SecretTypeServiceAccountToken),
	})
	if err != nil {
		return nil, fmt.Errorf("token secrets of namespace %s: %w", sa.Namespace, err)
	}
	items := list.Items
	sort.SliceStable(items, func(i, j int) bool {
		return items[j].CreationTimestamp.Before(&items[i].CreationTimestamp)
	})
	for _, s := range items {
		if !seen[s.Name] {
			out = append(out, s)
		}
	}
	return out, nil
}

// pickToken returns the token of the first Secret that is a valid token
// Secret of sa, or says why there is none.
func pickToken(sa *corev1.ServiceAccount, secrets []corev1.Secret) ([]byte, error) {
	var pending, invalid []string
	for _, s := range secrets {
		if s.Type != corev1.SecretTypeServiceAccountToken || s.Annotations[corev1.ServiceAccountNameKey] != sa.Name {
			continue
		}
		if uid := s.Annotations[corev1.ServiceAccountUIDKey]; uid != "" && uid != string(sa.UID) {
			continue // of an earlier service account of that name
		}
		if _, ok := s.Labels[labelTokenInvalidSince]; ok {
			invalid = append(invalid, s.Name)
			continue
		}
		if t := s.Data[corev1.ServiceAccountTokenKey]; len(t) > 0 {
			return t, nil
		}
		pending = append(pending, s.Name)
	}
	id := sa.Namespace + "/" + sa.Name
	switch {
	case len(pending) > 0:
		return nil, fmt.Errorf("service account %s has no token yet: kube-controller-manager fills in Secret %s within seconds, try again", id, strings.Join(pending, ", "))
	case len(invalid) > 0:
		return nil, fmt.Errorf("the token of service account %s (Secret %s) was invalidated by kube-controller-manager: delete the Secret, and the Source's controller makes a new one", id, strings.Join(invalid, ", "))
	}
	return nil, fmt.Errorf("service account %s has no token Secret: a Source or ClusterSource for it makes one (check its Ready condition), or create a Secret of type %s annotated %s=%s",
		id, corev1.SecretTypeServiceAccountToken, corev1.ServiceAccountNameKey, sa.Name)
}

// kubeconfigFor is a kubeconfig with one context: the cluster as the
// caller's kubeconfig knows it (CA embedded, so the kubeconfig works
// anywhere), unless server overrides its address, and the service account's
// token. It passes the checks that sources make of a Target's kubeconfig
// (package kubeconfig), so a source never refuses it; allowInsecureTLS
// keeps an insecure-skip-tls-verify, which only some sources accept.
func kubeconfigFor(contextName, clusterName string, cluster *clientcmdapi.Cluster, server string, sa *corev1.ServiceAccount, token []byte, allowInsecureTLS bool) (*clientcmdapi.Config, error) {
	c := clientcmdapi.NewCluster()
	c.Server = cluster.Server
	if server != "" {
		c.Server = server
	}
	if c.Server == "" {
		return nil, fmt.Errorf("cluster %q has no server address in the kubeconfig: set --server", clusterName)
	}
	c.CertificateAuthorityData = cluster.CertificateAuthorityData
	if len(c.CertificateAuthorityData) == 0 && cluster.CertificateAuthority != "" {
		ca, err := os.ReadFile(cluster.CertificateAuthority)
		if err != nil {
			return nil, fmt.Errorf("CA certificate of cluster %q: %w", clusterName, err)
		}
		c.CertificateAuthorityData = ca
	}
	c.InsecureSkipTLSVerify = cluster.InsecureSkipTLSVerify
	c.TLSServerName = cluster.TLSServerName

	user := clientcmdapi.NewAuthInfo()
	user.Token = string(token)
	userName := "system:serviceaccount:" + sa.Namespace + ":" + sa.Name
	kctx := clientcmdapi.NewContext()
	kctx.Cluster = clusterName
	kctx.AuthInfo = userName
	kctx.Namespace = sa.Namespace

	kc := clientcmdapi.NewConfig()
	kc.Clusters[clusterName] = c
	kc.AuthInfos[userName] = user
	kc.Contexts[contextName] = kctx
	kc.CurrentContext = contextName
	if err := clientcmd.Validate(*kc); err != nil {
		return nil, errors.Join(fmt.Errorf("the exported kubeconfig would be invalid"), err)
	}
	data, err := clientcmd.Write(*kc)
	if err != nil {
		return nil, err
	}
	if _, err := kubeconfig.Parse(data, kubeconfig.Policy{AllowInsecureTLS: allowInsecureTLS}); err != nil {
		if errors.Is(err, kubeconfig.ErrRefused) && c.InsecureSkipTLSVerify && !allowInsecureTLS {
			return nil, fmt.Errorf("cluster %q skips TLS verification (insecure-skip-tls-verify), which sources refuse unless their admin allows it: give the cluster's CA in the kubeconfig, or pass --allow-insecure-tls if the source allows it (%w)", clusterName, err)
		}
		return nil, fmt.Errorf("sources would refuse the exported kubeconfig: %w", err)
	}
	return kc, nil
}

// secretManifest renders the Secret that a Target's kubeconfigSecret refers
// to, with the kubeconfig under the key Targets read by default. Without a
// namespace, `kubectl -n NS apply -f -` puts it where the caller says.
func secretManifest(name, namespace string, kc *clientcmdapi.Config) ([]byte, error) {
	data, err := clientcmd.Write(*kc)
	if err != nil {
		return nil, err
	}
	s := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{v1alpha1.DefaultKubeconfigSecretKey: data},
	}
	return yaml.Marshal(s)
}
