{{/* The chart's name, shortened to fit a label. */}}
{{- define "pull-secret-updater.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The base of every object's name. The release "pull-secret-updater" (the documented one) gives
the same names as config/; another release gets "<release>-pull-secret-updater", so that the
cluster-scoped objects (ClusterRole, ClusterRoleBinding, admission policy) of two releases
never collide.
*/}}
{{- define "pull-secret-updater.fullname" -}}
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

{{- define "pull-secret-updater.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "pull-secret-updater.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pull-secret-updater.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pull-secret-updater.labels" -}}
helm.sh/chart: {{ include "pull-secret-updater.chart" . }}
{{ include "pull-secret-updater.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "pull-secret-updater.serviceAccountName" -}}
{{- required "serviceAccount.name is required" .Values.serviceAccount.name }}
{{- end }}

{{/* The user the API server sees for the controller; identities and the admission policy name it. */}}
{{- define "pull-secret-updater.username" -}}
{{- printf "system:serviceaccount:%s:%s" .Release.Namespace (include "pull-secret-updater.serviceAccountName" .) }}
{{- end }}

{{- define "pull-secret-updater.leaseName" -}}
{{- include "pull-secret-updater.fullname" . }}
{{- end }}

{{- define "pull-secret-updater.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* "true" when the policy file exists, i.e. it has rules. */}}
{{- define "pull-secret-updater.hasPolicy" -}}
{{- if .Values.policy.rules }}true{{ end }}
{{- end }}

{{/* "true" when the controller must read namespace labels (get namespaces). */}}
{{- define "pull-secret-updater.needsNamespaceLabels" -}}
{{- $needs := .Values.policy.namespaceLabels }}
{{- range .Values.policy.rules }}
{{- if and (kindIs "map" .) (hasKey . "namespaceSelector") }}
{{- $needs = true }}
{{- end }}
{{- end }}
{{- if $needs }}true{{ end }}
{{- end }}

{{/* "true" when the admission policy is wanted and the cluster serves its API. */}}
{{- define "pull-secret-updater.admissionPolicy" -}}
{{- if and .Values.admissionPolicy.enabled (.Capabilities.APIVersions.Has "admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy") }}true{{ end }}
{{- end }}

{{/* The policy file: only the rules; namespaceLabels is the chart's own switch. */}}
{{- define "pull-secret-updater.policyFile" -}}
{{- toYaml (dict "rules" .Values.policy.rules) }}
{{- end }}

{{- define "pull-secret-updater.validate" -}}
{{- if and (gt (int .Values.replicas) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicas > 1 needs leaderElection.enabled: without it every replica writes every Secret" }}
{{- end }}
{{- if not (has .Values.tokenSource (list "file" "tokenrequest")) }}
{{- fail (printf "tokenSource must be file or tokenrequest, not %q" (toString .Values.tokenSource)) }}
{{- end }}
{{- if not .Values.secretNames }}
{{- fail "secretNames must name at least one Secret" }}
{{- end }}
{{- end }}
