{{/* The pod shared by the DaemonSet and the Deployment. */}}
{{- define "sidelog.pod" -}}
{{- $daemon := eq .Values.kind "DaemonSet" -}}
metadata:
  labels:
    {{- include "sidelog.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ toYaml .Values.config | sha256sum }}
    prometheus.io/scrape: "true"
    prometheus.io/port: {{ .Values.service.port | quote }}
    prometheus.io/path: /metrics
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "sidelog.serviceAccountName" . }}
  # The API token only where the kubernetes filter watches the API server.
  automountServiceAccountToken: {{ $daemon }}
  {{- with .Values.podSecurityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
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
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: sidelog
      image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["run", "-c", "/etc/sidelog/sidelog.yaml"]
      env:
        - name: NODE_NAME
          valueFrom:
            fieldRef:
              fieldPath: spec.nodeName
        {{- with .Values.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: http-metrics
          containerPort: {{ .Values.service.port }}
          protocol: TCP
      readinessProbe:
        httpGet: {path: /readyz, port: http-metrics}
        periodSeconds: 10
      livenessProbe:
        httpGet: {path: /healthz, port: http-metrics}
        periodSeconds: 10
        failureThreshold: 3
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        {{- if $daemon }}
        - name: pods
          mountPath: /var/log/pods
          readOnly: true
        - name: containers
          mountPath: /var/log/containers
          readOnly: true
        {{- end }}
        - name: data
          mountPath: {{ .Values.config.data_dir | default "/var/lib/sidelog" }}
        - name: config
          mountPath: /etc/sidelog
          readOnly: true
  volumes:
    {{- if $daemon }}
    - name: pods
      hostPath:
        path: /var/log/pods
        type: Directory
    - name: containers
      hostPath:
        path: /var/log/containers
        type: DirectoryOrCreate
    - name: data
      hostPath:
        path: {{ .Values.dataHostPath }}
        type: DirectoryOrCreate
    {{- else }}
    - name: data
      emptyDir: {}
    {{- end }}
    - name: config
      configMap:
        name: {{ include "sidelog.fullname" . }}
{{- end -}}
