{{/* The chart name, overridable. */}}
{{- define "conclave.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The operator's resource name: conclave-operator for a release named conclave. */}}
{{- define "conclave.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else if contains (include "conclave.name" .) .Release.Name }}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s-operator" .Release.Name (include "conclave.name" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Labels every object of the chart carries. */}}
{{- define "conclave.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "conclave.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: conclave
{{- end }}

{{/* The operator pods' selector. */}}
{{- define "conclave.selectorLabels" -}}
app.kubernetes.io/name: {{ include "conclave.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The at-rest key Secret the operator reads, as namespace/name. */}}
{{- define "conclave.atRestKeySecret" -}}
{{- if .Values.operator.atRestKeySecret }}
{{- .Values.operator.atRestKeySecret }}
{{- else if .Values.dataPlane.enabled }}
{{- printf "%s/%s-at-rest-key" .Release.Namespace .Values.dataPlane.name }}
{{- end }}
{{- end }}
