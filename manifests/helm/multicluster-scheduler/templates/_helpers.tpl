{{/* Labels of every object of the chart. */}}
{{- define "admiralty.labels" -}}
app.kubernetes.io/name: multicluster-scheduler
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The pods' labels, which the Deployment, the Service and the PDB select. */}}
{{- define "admiralty.selectorLabels" -}}
app.kubernetes.io/name: multicluster-scheduler
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* clusterName, required and a DNS label. */}}
{{- define "admiralty.clusterName" -}}
{{- $n := required "clusterName is required: this cluster's name, a DNS label (--set clusterName=NAME)" .Values.clusterName -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$" $n) -}}
{{- fail (printf "clusterName %q must be a DNS label (lowercase letters, digits and '-', at most 63)" $n) -}}
{{- end -}}
{{- $n -}}
{{- end }}

{{- define "admiralty.image" -}}
{{ .image.repository }}:{{ .image.tag | default .root.Chart.AppVersion }}
{{- end }}

{{/* The KubeSchedulerConfiguration: the base file, with the values applied. */}}
{{- define "admiralty.schedulerConfig" -}}
{{- $cfg := .Values.scheduler.config | default (.Files.Get "files/scheduler-config.yaml") | fromYaml -}}
{{- if hasKey $cfg "Error" -}}{{- fail (printf "scheduler.config: %s" (get $cfg "Error")) -}}{{- end -}}
{{- $_ := set $cfg "clientConnection" (dict "qps" .Values.scheduler.clientConnection.qps "burst" .Values.scheduler.clientConnection.burst) -}}
{{- $le := .Values.leaderElection -}}
{{- $_ := set $cfg "leaderElection" (dict "leaderElect" true "resourceLock" "leases" "resourceNamespace" .Release.Namespace "resourceName" "kube-scheduler-admiralty" "leaseDuration" $le.leaseDuration "renewDeadline" $le.renewDeadline "retryPeriod" $le.retryPeriod) -}}
{{- $profiles := .Values.scheduler.profiles | default $cfg.profiles -}}
{{- if not .Values.scheduler.replaceDefaultScheduler -}}
{{- $kept := list -}}
{{- range $profiles -}}{{- if ne .schedulerName "default-scheduler" -}}{{- $kept = append $kept . -}}{{- end -}}{{- end -}}
{{- $profiles = $kept -}}
{{- end -}}
{{- $profiles = concat $profiles .Values.scheduler.extraProfiles -}}
{{- $clusterName := include "admiralty.clusterName" . -}}
{{- range $profiles -}}
{{- range (.pluginConfig | default list) -}}
{{- $extra := get $.Values.scheduler.pluginArgs .name | default dict -}}
{{- $args := mergeOverwrite (.args | default dict) (deepCopy $extra) -}}
{{- if eq .name "AdmiraltyProxy" -}}{{- $_ := set $args "clusterName" $clusterName -}}{{- $_ := set $args "kubeconfigs" (deepCopy $.Values.kubeconfigs) -}}{{- end -}}
{{- $_ := set . "args" $args -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "profiles" $profiles -}}
{{- toYaml $cfg -}}
{{- end }}
