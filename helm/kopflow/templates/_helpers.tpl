{{/* The release's full name: the release name, with the chart's unless it already has it. */}}
{{- define "kopflow.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kopflow.serviceAccountName" -}}
{{- default (include "kopflow.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "kopflow.selectorLabels" -}}
app.kubernetes.io/name: {{ default .Chart.Name .Values.nameOverride | quote }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
{{- end -}}

{{- define "kopflow.labels" -}}
{{ include "kopflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | quote }}
{{- end -}}

{{/* The namespaces that get a Role in namespaced mode: the watched ones and the release's
own (its Lease lives there), each once. */}}
{{- define "kopflow.roleNamespaces" -}}
{{- $all := append .Values.watchNamespaces .Release.Namespace | uniq -}}
{{- toJson $all -}}
{{- end -}}
