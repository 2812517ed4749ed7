package proxy

import (
	v1 "k8s.io/api/core/v1"

	"admiralty.io/multicluster-scheduler/apis/multicluster/v1alpha1"
	"admiralty.io/multicluster-scheduler/targets"
)

// trimPod is the transform of the scheduler's pod cache, which holds every
// pod of the cluster not finished (proxies and delegates included). It does
// what the upstream transform it replaces does (no managed fields). Of a
// bound pod, which is never scheduled again and which the scheduler reads
// only as a pod already on its node, it leaves out what no plugin of this
// binary reads there (trimBound); a pod waiting to be scheduled is kept
// whole. The scheduler never updates a pod from its cache (it patches the
// status and binds).
func trimPod(obj any) (any, error) {
	if _, err := targets.DropManagedFields(obj); err != nil {
		return obj, err
	}
	pod, ok := obj.(*v1.Pod)
	if !ok || pod.Spec.NodeName == "" {
		return obj, nil
	}
	trimBound(pod)
	return pod, nil
}

// trimBound leaves out of a bound pod:
//   - a proxy's original manifest, which PreFilter reads before binding
//     only (about as large as the rest of a small proxy);
//   - of each container, all but its name, resources, resize policy,
//     ports and restart policy (what NodeResourcesFit, NodePorts and
//     DynamicResources read of pods on a node): images, commands,
//     environment, mounts, probes; and ephemeral containers, which request
//     nothing;
//   - the volumes that only carry files into the pod (projected, config
//     map, secret, downward API: every pod's service account token is
//     one), which no volume plugin counts or checks; the volumes that
//     claim or attach storage, which VolumeRestrictions and
//     NodeVolumeLimits read, are kept.
//
// Labels, affinity, topology spread, priority and the status (start time,
// resources allocated by an in-place resize) stay: inter-pod affinity,
// spreading, preemption and resource accounting read them.
func trimBound(pod *v1.Pod) {
	if pod.Labels[v1alpha1.LabelIsProxy] == "true" {
		delete(pod.Annotations, v1alpha1.AnnotationSourcePodManifest)
	}
	trimContainers(pod.Spec.InitContainers)
	trimContainers(pod.Spec.Containers)
	pod.Spec.EphemeralContainers = nil
	if len(pod.Spec.Volumes) == 0 {
		return
	}
	volumes := pod.Spec.Volumes[:0]
	for _, v := range pod.Spec.Volumes {
		if v.Projected != nil || v.ConfigMap != nil || v.Secret != nil || v.DownwardAPI != nil {
			continue
		}
		volumes = append(volumes, v)
	}
	if len(volumes) == 0 {
		volumes = nil
	}
	pod.Spec.Volumes = volumes
}

func trimContainers(cs []v1.Container) {
	for i, c := range cs {
		cs[i] = v1.Container{Name: c.Name, Resources: c.Resources, ResizePolicy: c.ResizePolicy, Ports: c.Ports, RestartPolicy: c.RestartPolicy}
	}
}
