{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "metrics-poller.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: release-chart unless the release name already contains the chart name. */}}
{{- define "metrics-poller.fullname" -}}
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

{{/* StatefulSet and CronJob names: 52 characters at most. A StatefulSet labels its pods with
controller-revision-hash <name>-<10-character hash> (a label value: 63 at most) and names them
<name>-<ordinal>; a CronJob names its Jobs <name>-<11-digit schedule time>. */}}
{{- define "metrics-poller.workloadName" -}}
{{- include "metrics-poller.fullname" . | trunc 52 | trimSuffix "-" -}}
{{- end -}}

{{/* The headless Service of sharded mode; a Service name is a DNS label (63 characters at most). */}}
{{- define "metrics-poller.headlessName" -}}
{{- printf "%s-headless" (include "metrics-poller.fullname" . | trunc 54 | trimSuffix "-") -}}
{{- end -}}

{{- define "metrics-poller.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "metrics-poller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "metrics-poller.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "metrics-poller.labels" -}}
helm.sh/chart: {{ include "metrics-poller.chart" . }}
{{ include "metrics-poller.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end -}}

{{- define "metrics-poller.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "metrics-poller.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret the pods read METRICS_POLLER__* variables from; empty when there is none. */}}
{{- define "metrics-poller.secretName" -}}
{{- if .Values.existingSecret -}}
{{- .Values.existingSecret -}}
{{- else if .Values.secrets -}}
{{- include "metrics-poller.fullname" . -}}
{{- end -}}
{{- end -}}

{{/* repository:tag. YAML turns an unquoted tag such as 1 or 1.10 into a number: a whole number is
written back as digits, any other number is refused (1.10 has already become 1.1). */}}
{{- define "metrics-poller.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if not (kindIs "string" $tag) -}}
{{- if and (or (kindIs "float64" $tag) (kindIs "int64" $tag) (kindIs "int" $tag)) (eq (float64 $tag) (float64 (int64 $tag))) -}}
{{- $tag = printf "%d" (int64 $tag) -}}
{{- else -}}
{{- fail (printf "image.tag: %v is not a string (YAML reads an unquoted 1.10 as the number 1.1); quote the tag, e.g. --set-string image.tag=1.10 or tag: \"1.10\"" $tag) -}}
{{- end -}}
{{- end -}}
{{- if not .Values.image.repository -}}
{{- fail "image.repository: empty; set it to the registry path you pushed the image to (README, In Kubernetes)" -}}
{{- end -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}

{{/* Secret settings that can be read from a file: setting -> the environment variable of its file key. */}}
{{- define "metrics-poller.secretFileSettings" -}}
elasticsearch.api_key: METRICS_POLLER__ELASTICSEARCH__API_KEY_FILE
elasticsearch.password: METRICS_POLLER__ELASTICSEARCH__PASSWORD_FILE
azure.credential.client_secret: METRICS_POLLER__AZURE__CREDENTIAL__CLIENT_SECRET_FILE
azure.credential.certificate_password: METRICS_POLLER__AZURE__CREDENTIAL__CERTIFICATE_PASSWORD_FILE
azure.credential.certificate: METRICS_POLLER__AZURE__CREDENTIAL__CERTIFICATE_PATH
{{- end -}}

{{/* Where secretFiles / existingSecretFiles are mounted. */}}
{{- define "metrics-poller.secretFilesDir" -}}
/run/secrets/metrics-poller
{{- end -}}

{{/* Refuse secrets anywhere under config (walked recursively): it becomes a ConfigMap. */}}
{{- define "metrics-poller.secretGuard" -}}
{{- $path := index . 0 -}}
{{- $value := index . 1 -}}
{{- if kindIs "map" $value -}}
{{- range $key, $child := $value -}}
{{- $here := printf "%s.%s" $path $key -}}
{{- if and $child (regexMatch "^(api_key|password|bearer_token|.*secret|.*_password|.*_token|private_key)$" (lower $key)) -}}
{{- fail (printf "%s: a secret in config lands in a ConfigMap, readable by anyone who can read the namespace's ConfigMaps; put it in secretFiles (e.g. secretFiles.%s), existingSecretFiles, secrets or existingSecret" $here (trimPrefix "config." $here)) -}}
{{- end -}}
{{- include "metrics-poller.secretGuard" (list $here $child) -}}
{{- end -}}
{{- else if kindIs "slice" $value -}}
{{- range $i, $child := $value -}}
{{- include "metrics-poller.secretGuard" (list (printf "%s[%d]" $path $i) $child) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Cursor store: sharded pods share Elasticsearch; otherwise file only on a persistent volume. */}}
{{- define "metrics-poller.stateBackend" -}}
{{- if eq .Values.mode "sharded" -}}
elasticsearch
{{- else if .Values.state.backend -}}
{{- .Values.state.backend -}}
{{- else if .Values.persistence.enabled -}}
file
{{- else -}}
elasticsearch
{{- end -}}
{{- end -}}

{{/* Refuse combinations that cannot work, with a message naming the value to change. */}}
{{- define "metrics-poller.validate" -}}
{{- if not (has .Values.mode (list "service" "cronjob" "sharded")) -}}
{{- fail (printf "mode must be one of service, cronjob, sharded; got %q" (toString .Values.mode)) -}}
{{- end -}}
{{- if and .Values.existingSecret .Values.secrets -}}
{{- fail "set either secrets or existingSecret, not both" -}}
{{- end -}}
{{- range $key, $_ := .Values.secrets -}}
{{- if not (hasPrefix "METRICS_POLLER__" $key) -}}
{{- fail (printf "secrets: key %q must be an environment variable name starting with METRICS_POLLER__" $key) -}}
{{- end -}}
{{- end -}}
{{- $fileSettings := include "metrics-poller.secretFileSettings" . | fromYaml -}}
{{- range $setting, $_ := .Values.secretFiles -}}
{{- if not (hasKey $fileSettings $setting) -}}
{{- fail (printf "secretFiles: unknown setting %q; expected one of %s" $setting (keys $fileSettings | sortAlpha | join ", ")) -}}
{{- end -}}
{{- end -}}
{{- range $setting, $key := .Values.existingSecretFiles.keys -}}
{{- if not (hasKey $fileSettings $setting) -}}
{{- fail (printf "existingSecretFiles.keys: unknown setting %q; expected one of %s" $setting (keys $fileSettings | sortAlpha | join ", ")) -}}
{{- end -}}
{{- if hasKey $.Values.secretFiles $setting -}}
{{- fail (printf "%s: set in both secretFiles and existingSecretFiles.keys; keep one" $setting) -}}
{{- end -}}
{{- end -}}
{{- if and .Values.existingSecretFiles.keys (not .Values.existingSecretFiles.name) -}}
{{- fail "existingSecretFiles.keys needs existingSecretFiles.name (the Secret holding them)" -}}
{{- end -}}
{{- if and .Values.existingSecretFiles.name (not .Values.existingSecretFiles.keys) -}}
{{- fail "existingSecretFiles.name needs existingSecretFiles.keys (which setting each key of that Secret feeds)" -}}
{{- end -}}
{{- include "metrics-poller.secretGuard" (list "config" .Values.config) -}}
{{- $targetVariables := list "METRICS_POLLER__AZURE__SUBSCRIPTIONS" "METRICS_POLLER__AZURE__RESOURCE_IDS" -}}
{{- $fromEnvironment := false -}}
{{- range .Values.extraEnv -}}
{{- if has .name $targetVariables -}}{{- $fromEnvironment = true -}}{{- end -}}
{{- end -}}
{{- range $name, $_ := .Values.secrets -}}
{{- if has $name $targetVariables -}}{{- $fromEnvironment = true -}}{{- end -}}
{{- end -}}
{{- if not (or (dig "azure" "subscriptions" list .Values.config) (dig "azure" "resource_ids" list .Values.config) $fromEnvironment) -}}
{{- fail "config.azure: no Azure target; set config.azure.subscriptions (e.g. [{id: <subscription GUID>}]) or config.azure.resource_ids, or the poller starts, finds nothing to poll and exits" -}}
{{- end -}}
{{- if not (has .Values.state.backend (list "" "file" "elasticsearch")) -}}
{{- fail (printf "state.backend must be file or elasticsearch; got %q" (toString .Values.state.backend)) -}}
{{- end -}}
{{- if eq .Values.mode "sharded" -}}
{{- if lt (int .Values.replicas) 1 -}}
{{- fail "replicas must be at least 1 in sharded mode" -}}
{{- end -}}
{{- if .Values.persistence.enabled -}}
{{- fail "sharded mode keeps cursors in Elasticsearch; disable persistence" -}}
{{- end -}}
{{- if eq .Values.state.backend "file" -}}
{{- fail "sharded mode keeps cursors in Elasticsearch; state.backend file is not possible" -}}
{{- end -}}
{{- end -}}
{{- if and (eq (include "metrics-poller.stateBackend" .) "file") (not .Values.persistence.enabled) -}}
{{- fail "state.backend file needs persistence.enabled (cursors on an emptyDir are lost with the pod)" -}}
{{- end -}}
{{- if and .Values.workloadIdentity.enabled (not .Values.workloadIdentity.clientId) -}}
{{- fail "workloadIdentity.enabled needs workloadIdentity.clientId" -}}
{{- end -}}
{{- if and .Values.workloadIdentity.enabled (not .Values.serviceAccount.create) -}}
{{- fail "workloadIdentity.enabled annotates the ServiceAccount this chart creates: keep serviceAccount.create true" -}}
{{- end -}}
{{- end -}}

{{/* The pod template shared by the Deployment, the StatefulSet and the CronJob. */}}
{{- define "metrics-poller.podTemplate" -}}
{{- $backend := include "metrics-poller.stateBackend" . -}}
{{- $secretName := include "metrics-poller.secretName" . -}}
{{- $longRunning := ne .Values.mode "cronjob" -}}
{{- $fileSettings := include "metrics-poller.secretFileSettings" . | fromYaml -}}
{{- $secretFilesDir := include "metrics-poller.secretFilesDir" . -}}
{{- $secretFiles := concat (keys .Values.secretFiles) (keys .Values.existingSecretFiles.keys) | sortAlpha -}}
metadata:
  labels:
    {{- include "metrics-poller.selectorLabels" . | nindent 4 }}
    app.kubernetes.io/component: {{ .Values.mode }}
    {{- if .Values.workloadIdentity.enabled }}
    azure.workload.identity/use: "true"
    {{- end }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- if and .Values.secrets (not .Values.existingSecret) }}
    checksum/secret: {{ include (print $.Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- end }}
    {{- if .Values.secretFiles }}
    checksum/secret-files: {{ include (print $.Template.BasePath "/secret-files.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "metrics-poller.serviceAccountName" . }}
  automountServiceAccountToken: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if not $longRunning }}
  restartPolicy: Never
  {{- end }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: metrics-poller
      image: {{ include "metrics-poller.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        - {{ ternary "run" "once" $longRunning }}
      env:
        - name: METRICS_POLLER_CONFIG
          value: /etc/metrics-poller/poller.yaml
        - name: METRICS_POLLER__HTTP__LISTEN
          value: "0.0.0.0:{{ .Values.service.port }}"
        - name: METRICS_POLLER__LOGGING__FORMAT
          value: json
        - name: METRICS_POLLER__STATE__BACKEND
          value: {{ $backend }}
        {{- if eq $backend "file" }}
        - name: METRICS_POLLER__STATE__PATH
          value: /var/lib/metrics-poller/cursors.json
        {{- end }}
        {{- if eq .Values.mode "sharded" }}
        {{- /* No shard index: each pod derives it from its name (<statefulset>-<N>). */}}
        - name: METRICS_POLLER__SHARD__COUNT
          value: {{ .Values.replicas | int | quote }}
        {{- else }}
        {{- /* One pod owns every account; an explicit index stops derivation from a pod name that happens to end in digits. */}}
        - name: METRICS_POLLER__SHARD__INDEX
          value: "0"
        - name: METRICS_POLLER__SHARD__COUNT
          value: "1"
        {{- end }}
        {{- if .Values.workloadIdentity.enabled }}
        - name: METRICS_POLLER__AZURE__CREDENTIAL__TYPE
          value: workload_identity
        {{- end }}
        {{- range $secretFiles }}
        - name: {{ get $fileSettings . }}
          value: {{ printf "%s/%s" $secretFilesDir . | quote }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- if $secretName }}
      envFrom:
        - secretRef:
            name: {{ $secretName }}
      {{- end }}
      {{- if $longRunning }}
      ports:
        - name: metrics
          containerPort: {{ .Values.service.port }}
          protocol: TCP
      {{- with .Values.livenessProbe }}
      livenessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .Values.readinessProbe }}
      readinessProbe:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- end }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/metrics-poller
          readOnly: true
        - name: state
          mountPath: /var/lib/metrics-poller
        - name: tmp
          mountPath: /tmp
        {{- if $secretFiles }}
        - name: secret-files
          mountPath: {{ $secretFilesDir }}
          readOnly: true
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "metrics-poller.fullname" . }}
    - name: state
      {{- if .Values.persistence.enabled }}
      persistentVolumeClaim:
        claimName: {{ default (include "metrics-poller.fullname" .) .Values.persistence.existingClaim }}
      {{- else }}
      emptyDir:
        sizeLimit: 64Mi
      {{- end }}
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- if $secretFiles }}
    - name: secret-files
      projected:
        defaultMode: 288  # 0440: readable by the pod's group (fsGroup), nobody else
        sources:
          {{- if .Values.secretFiles }}
          - secret:
              name: {{ include "metrics-poller.fullname" . | trunc 57 | trimSuffix "-" }}-files
              items:
                {{- range $setting, $_ := .Values.secretFiles }}
                - key: {{ $setting }}
                  path: {{ $setting }}
                {{- end }}
          {{- end }}
          {{- with .Values.existingSecretFiles.keys }}
          - secret:
              name: {{ $.Values.existingSecretFiles.name }}
              items:
                {{- range $setting, $key := . }}
                - key: {{ $key }}
                  path: {{ $setting }}
                {{- end }}
          {{- end }}
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
