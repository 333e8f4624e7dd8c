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

{{- define "metrics-poller.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
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
