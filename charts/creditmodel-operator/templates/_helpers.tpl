{{/*
Helpers are prefixed with the chart name so that they never collide with a parent chart's.
*/}}

{{/* The chart name, overridable with nameOverride. */}}
{{- define "creditmodel-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The fully qualified app name: the release name, suffixed with the chart name unless the release name
already contains it. Truncated at 63 characters (DNS-1123 label limit).
*/}}
{{- define "creditmodel-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "creditmodel-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The namespace every namespaced object goes to. */}}
{{- define "creditmodel-operator.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Selector labels: stable for the life of a release (Deployment selectors are immutable). */}}
{{- define "creditmodel-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "creditmodel-operator.name" . | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end }}

{{/* Common labels, on every object the chart renders. */}}
{{- define "creditmodel-operator.labels" -}}
helm.sh/chart: {{ include "creditmodel-operator.chart" . }}
{{ include "creditmodel-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ regexReplaceAll "^[^A-Za-z0-9]+|[^A-Za-z0-9]+$" (include "creditmodel-operator.tag" (dict "image" .Values.image "context" .) | trunc 63) "" | quote }}
app.kubernetes.io/part-of: creditmodel
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one component: common labels plus app.kubernetes.io/component. */}}
{{- define "creditmodel-operator.componentLabels" -}}
{{ include "creditmodel-operator.labels" .context }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The ServiceAccount the operator runs as. */}}
{{- define "creditmodel-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "creditmodel-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {registry, repository, tag, digest}: the digest wins over the tag, and the
tag defaults to the chart's appVersion. Call with (dict "image" .Values.x "context" $).
*/}}
{{- define "creditmodel-operator.image" -}}
{{- $repository := .image.repository }}
{{- if .image.registry }}
{{- $repository = printf "%s/%s" .image.registry .image.repository }}
{{- end }}
{{- if .image.digest }}
{{- printf "%s@%s" $repository .image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (include "creditmodel-operator.tag" .) }}
{{- end }}
{{- end }}

{{/*
An image's tag, or the chart's appVersion when it has none. A number is a tag too: `tag: 0` fell
back to appVersion (`default` takes 0 for empty). Call with (dict "image" .Values.x "context" $).
*/}}
{{- define "creditmodel-operator.tag" -}}
{{- if kindIs "invalid" .image.tag }}{{ .context.Chart.AppVersion }}
{{- else if eq (toString .image.tag) "" }}{{ .context.Chart.AppVersion }}
{{- else }}{{ toString .image.tag }}
{{- end }}
{{- end }}

{{/* Labels that the monitoring objects add for the Prometheus / Grafana selectors. */}}
{{- define "creditmodel-operator.monitoringLabels" -}}
{{ include "creditmodel-operator.componentLabels" (dict "context" .context "component" "monitoring") }}
{{- with .extra }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Whether to render a Prometheus Operator object. Call with (dict "context" $ "kind" "PodMonitor"
"value" "podMonitor"); renders "true" or nothing. The cluster serves the kind (Helm's capabilities:
discovery on install/upgrade, --api-versions for helm template): render. Otherwise, by
monitoring.ifCRDsMissing: fail naming the CRDs to install, skip, or render anyway.
*/}}
{{- define "creditmodel-operator.monitoringKind" -}}
{{- $api := printf "monitoring.coreos.com/v1/%s" .kind }}
{{- $mode := .context.Values.monitoring.ifCRDsMissing }}
{{- if or (.context.Capabilities.APIVersions.Has $api) (eq $mode "render") }}true
{{- else if eq $mode "fail" }}
{{- fail (printf "monitoring.%s.enabled is true, but the cluster does not serve %s: install the Prometheus Operator CRDs first (podmonitors.monitoring.coreos.com, servicemonitors.monitoring.coreos.com, prometheusrules.monitoring.coreos.com; e.g. from the prometheus-operator release bundle or the kube-prometheus-stack chart), or set monitoring.ifCRDsMissing=skip to leave the monitoring objects out. helm template: pass --api-versions %s" .value $api $api) }}
{{- end }}
{{- end }}
