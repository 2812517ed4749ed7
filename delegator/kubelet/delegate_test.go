package kubelet

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	mcfake "admiralty.io/multicluster-scheduler/apis/generated/clientset/versioned/fake"
	mcinformers "admiralty.io/multicluster-scheduler/apis/generated/informers/externalversions"
	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/targets"
)

// The relay finds a proxy's delegate through its PodChaperon (the source may
// not list the target's pods), then reads it by name: a missing delegate,
// one the source may not read yet, or a pod of that name that the chaperon
// does not control is "not yet", never another pod.
func TestDelegateOf(t *testing.T) {
	defer func(d time.Duration) { delegateWait = d }(delegateWait)
	proxy := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "proxy-uid"}}
	chaperon := func(name string, uid types.UID, parent types.UID, deleting bool) *v1alpha1.PodChaperon {
		ch := &v1alpha1.PodChaperon{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: uid,
			Labels: map[string]string{v1alpha1.LabelParentUID: string(parent)}}}
		if deleting {
			ch.DeletionTimestamp = &metav1.Time{}
			ch.Finalizers = []string{"test"}
		}
		return ch
	}
	pod := func(name string, owner types.UID) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}}
		if owner != "" {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "PodChaperon", Name: name, UID: owner, Controller: new(true)}}
		}
		return p
	}
	cases := []struct {
		name      string
		chaperons []runtime.Object
		pods      []runtime.Object
		forbidden bool
		// forbidOnce: Forbidden at the first get only (the Role catches up).
		forbidOnce bool
		want       string
		wantCode   int
	}{
		{
			name:      "the pod of the chaperon's name, controlled by it",
			chaperons: []runtime.Object{chaperon("web-1a2b3", "ch-uid", "proxy-uid", false), chaperon("other", "other-uid", "other-proxy", false)},
			pods:      []runtime.Object{pod("web-1a2b3", "ch-uid"), pod("other", "other-uid")},
			want:      "web-1a2b3",
		},
		{
			name:      "a chaperon not being deleted is preferred",
			chaperons: []runtime.Object{chaperon("web-old", "old-uid", "proxy-uid", true), chaperon("web-new", "new-uid", "proxy-uid", false)},
			pods:      []runtime.Object{pod("web-old", "old-uid"), pod("web-new", "new-uid")},
			want:      "web-new",
		},
		{
			name:     "no chaperon: no delegate yet",
			pods:     []runtime.Object{pod("web-1a2b3", "ch-uid")},
			wantCode: http.StatusNotFound,
		},
		{
			name:      "no delegate made yet",
			chaperons: []runtime.Object{chaperon("web-1a2b3", "ch-uid", "proxy-uid", false)},
			wantCode:  http.StatusNotFound,
		},
		{
			name:      "a pod of that name that the chaperon does not control",
			chaperons: []runtime.Object{chaperon("bystander", "ch-uid", "proxy-uid", false)},
			pods:      []runtime.Object{pod("bystander", "")},
			wantCode:  http.StatusNotFound,
		},
		{
			name:      "an earlier chaperon's delegate",
			chaperons: []runtime.Object{chaperon("web-1a2b3", "ch-uid", "proxy-uid", false)},
			pods:      []runtime.Object{pod("web-1a2b3", "earlier-uid")},
			wantCode:  http.StatusNotFound,
		},
		{
			name:      "not readable yet (the target's delegates Role lags)",
			chaperons: []runtime.Object{chaperon("web-1a2b3", "ch-uid", "proxy-uid", false)},
			pods:      []runtime.Object{pod("web-1a2b3", "ch-uid")},
			forbidden: true,
			wantCode:  http.StatusServiceUnavailable,
		},
		{
			name:       "readable a moment later: asked again",
			chaperons:  []runtime.Object{chaperon("web-1a2b3", "ch-uid", "proxy-uid", false)},
			pods:       []runtime.Object{pod("web-1a2b3", "ch-uid")},
			forbidOnce: true,
			want:       "web-1a2b3",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			kube := kubefake.NewClientset(tc.pods...)
			var listed bool
			kube.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
				listed = true
				return true, nil, apierrors.NewForbidden(corev1.Resource("pods"), "", errors.New("a source may not list pods"))
			})
			gets := 0
			kube.PrependReactor("get", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
				gets++
				if tc.forbidden || (tc.forbidOnce && gets == 1) {
					return true, nil, apierrors.NewForbidden(corev1.Resource("pods"), a.(k8stesting.GetAction).GetName(), errors.New("not in the Role yet"))
				}
				return false, nil, nil
			})
			delegateWait = 0
			if tc.forbidOnce {
				delegateWait = time.Minute
			}
			mc := mcfake.NewSimpleClientset(tc.chaperons...)
			tgt := &targets.Target{Ref: targets.Ref{Namespace: "ns", Name: "c2"}, Client: kube, MCClient: mc,
				Chaperons: mcinformers.NewSharedInformerFactory(mc, 0)}
			got, err := delegateOf(context.Background(), tgt, proxy)
			if listed {
				t.Errorf("the relay listed the target's pods")
			}
			if tc.wantCode == 0 {
				if err != nil || got != tc.want {
					t.Fatalf("delegateOf = %q, %v; want %q", got, err, tc.want)
				}
				return
			}
			var se *StatusError
			if !errors.As(err, &se) || se.Code != tc.wantCode {
				t.Fatalf("delegateOf = %q, %v; want a %d StatusError", got, err, tc.wantCode)
			}
		})
	}
}
