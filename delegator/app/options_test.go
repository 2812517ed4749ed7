package app

import (
	"strings"
	"testing"
	"time"
)

func TestValidateNamesTheBadFlag(t *testing.T) {
	cases := []struct {
		name    string
		mutate  func(o *Options)
		wantErr string
	}{
		{name: "defaults with a cluster name are valid", mutate: func(o *Options) {}},
		{name: "a missing cluster name is refused", mutate: func(o *Options) { o.ClusterName = "" }, wantErr: "--cluster-name is required"},
		{name: "a cluster name that is not a DNS label is refused", mutate: func(o *Options) { o.ClusterName = "Cluster_1" }, wantErr: "--cluster-name"},
		{name: "a lease shorter than the renew deadline is refused", mutate: func(o *Options) { o.LeaderElection.LeaseDuration.Duration = 5 * time.Second }, wantErr: "--leader-elect-lease-duration"},
		{name: "a renew deadline shorter than the retry period is refused", mutate: func(o *Options) { o.LeaderElection.RetryPeriod.Duration = time.Minute }, wantErr: "--leader-elect-renew-deadline"},
		{name: "a non-positive QPS is refused", mutate: func(o *Options) { o.KubeAPIQPS = 0 }, wantErr: "--kube-api-qps"},
		{name: "no workers is refused", mutate: func(o *Options) { o.Workers = 0 }, wantErr: "--workers"},
		{name: "an unknown log format is refused", mutate: func(o *Options) { o.Logging.Format = "xml" }, wantErr: "--log-format"},
		{name: "a webhook address without a port is refused", mutate: func(o *Options) { o.WebhookAddr = "127.0.0.1" }, wantErr: "--webhook-addr"},
		{name: "a webhook URL over plain HTTP is refused", mutate: func(o *Options) { o.WebhookURL = "http://127.0.0.1:9443/mutate-pods" }, wantErr: "--webhook-url"},
		{name: "a webhook URL with a query is refused", mutate: func(o *Options) { o.WebhookURL = "https://127.0.0.1:9443/mutate-pods?x=1" }, wantErr: "--webhook-url"},
		{name: "an HTTPS webhook URL is valid", mutate: func(o *Options) { o.WebhookURL = "https://127.0.0.1:9443/mutate-pods" }},
		{name: "a webhook service without a namespace is refused", mutate: func(o *Options) { o.WebhookService = "admiralty-webhook" }, wantErr: "--webhook-service"},
		{name: "a kubelet address without a port is refused", mutate: func(o *Options) { o.KubeletAddr = "127.0.0.1" }, wantErr: "--kubelet-addr"},
		{name: "a kubelet address with a named port is refused", mutate: func(o *Options) { o.KubeletAddr = ":kubelet" }, wantErr: "--kubelet-addr"},
		{name: "a kubelet advertise address that is a host name is refused", mutate: func(o *Options) { o.KubeletAdvertiseAddress = "delegator.local" }, wantErr: "--kubelet-advertise-address"},
		{name: "timing checks do not apply without leader election", mutate: func(o *Options) {
			o.LeaderElection.LeaderElect = false
			o.LeaderElection.RetryPeriod.Duration = time.Hour
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOptions()
			o.ClusterName = "cluster1"
			tc.mutate(o)
			err := o.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}
