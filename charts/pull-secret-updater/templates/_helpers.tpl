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

{{/*
The providers value, planned: a JSON list with, per entry, the "section" the controller reads
from PSU_PROVIDERS (the entry without the chart's own keys, with the kind's defaults written
out), the projected "token" volume it needs with tokenSource file (volume name, directory,
file, audience) and its "ca" bundle (ConfigMap key, PEM), or null for either. Read it with
fromJsonArray. The token file's path and the volume's mount come from one place, so they
cannot disagree.
*/}}
{{- define "pull-secret-updater.providerPlans" -}}
{{- $defaults := dict
      "ecr" (dict "sa_audience" "sts.amazonaws.com" "token_path" "/var/run/secrets/sts.amazonaws.com/serviceaccount/token")
      "gar" (dict "sa_audience" "sts.googleapis.com" "token_path" "/var/run/secrets/iam.googleapis.com/serviceaccount/token")
      "acr" (dict "sa_audience" "api://AzureADTokenExchange" "token_path" "/var/run/secrets/azure/tokens/azure-identity-token") }}
{{- $plans := list }}
{{- $kinds := list }}
{{- /* Every directory the pod mounts something at: a token's must be none of them, nor
inside or around one. */}}
{{- $dirs := list "/tmp" "/etc/pull-secret-updater/ca" "/etc/pull-secret-updater/policy" "/var/run/secrets/kubernetes.io/serviceaccount" }}
{{- if eq .Values.tokenSource "file" }}
{{- $dirs = append $dirs "/var/run/chainguard/oidc" }}
{{- end }}
{{- range .Values.providers }}
{{- $kind := toString .kind }}
{{- if eq $kind "chainguard" }}
{{- fail "providers: the chainguard provider is configured by the values issuer, registry, saAudience and caBundle, not by a providers entry" }}
{{- end }}
{{- if has $kind $kinds }}
{{- fail (printf "providers: one entry per kind, and %s is listed twice" $kind) }}
{{- end }}
{{- $kinds = append $kinds $kind }}
{{- $section := merge (omit . "caBundle") (get $defaults $kind | default dict) }}
{{- $token := dict }}
{{- if eq $.Values.tokenSource "file" }}
{{- $path := toString (get $section "token_path") }}
{{- $audience := toString (get $section "sa_audience") }}
{{- if or (not (get $section "token_path")) (not (get $section "sa_audience")) }}
{{- fail (printf "providers: the %s entry needs token_path and sa_audience with tokenSource file (the chart projects a token with that audience at that path)" $kind) }}
{{- end }}
{{- if or (not (isAbs $path)) (eq (dir $path) "/") (ne (clean $path) $path) }}
{{- fail (printf "providers: the %s entry's token_path %q must be an absolute, clean path to a file in a directory of its own" $kind $path) }}
{{- end }}
{{- range $dirs }}
{{- if or (eq . (dir $path)) (hasPrefix (printf "%s/" .) (dir $path)) (hasPrefix (printf "%s/" (dir $path)) .) }}
{{- fail (printf "providers: the %s entry's token_path %q is in or around %s, where something else is mounted: give it a directory of its own" $kind $path .) }}
{{- end }}
{{- end }}
{{- $dirs = append $dirs (dir $path) }}
{{- $token = dict "volume" (printf "%s-token" $kind) "dir" (dir $path) "file" (base $path) "audience" $audience }}
{{- end }}
{{- $ca := dict }}
{{- if .caBundle }}
{{- if hasKey . "ca_bundle" }}
{{- fail (printf "providers: the %s entry has caBundle (PEM, mounted by the chart) and ca_bundle (a path): give one" $kind) }}
{{- end }}
{{- $ca = dict "key" (printf "%s-ca.crt" $kind) "pem" (.caBundle | trim) }}
{{- $_ := set $section "ca_bundle" (printf "/etc/pull-secret-updater/ca/%s-ca.crt" $kind) }}
{{- end }}
{{- $plans = append $plans (dict "section" $section "token" $token "ca" $ca) }}
{{- end }}
{{- toJson $plans }}
{{- end }}

{{/* "true" when the CA bundle ConfigMap exists: the issuer's bundle or a provider's. */}}
{{- define "pull-secret-updater.hasCABundle" -}}
{{- $has := .Values.caBundle }}
{{- range .Values.providers }}
{{- if .caBundle }}
{{- $has = true }}
{{- end }}
{{- end }}
{{- if $has }}true{{ end }}
{{- end }}
