{{/* Names, labels and the params.yaml-derived defaults. Every helper is namespaced "tuneline.". */}}

{{- define "tuneline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tuneline.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 45 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "tuneline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "tuneline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tuneline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "tuneline.labels" -}}
helm.sh/chart: {{ include "tuneline.chart" . }}
{{ include "tuneline.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tuneline
app.kubernetes.io/component: inference
tuneline.io/model: {{ .Values.model.name | quote }}
tuneline.io/model-version: {{ .Values.model.version | quote }}
{{- end }}

{{/* Which KServe API serves the model: inferenceservice (InferenceService + ServingRuntime, TGI or vLLM)
or llminferenceservice (LLMInferenceService v1alpha2: vLLM behind the llm-d router). */}}
{{- define "tuneline.llmisvc" -}}
{{- if eq .Values.serving.api "llminferenceservice" }}true{{ end }}
{{- end }}

{{/* Pods of the model server, as KServe labels them (for the PDB, the metrics Service, NetworkPolicies). */}}
{{- define "tuneline.predictorSelector" -}}
{{- if include "tuneline.llmisvc" . }}
app.kubernetes.io/name: {{ include "tuneline.fullname" . }}
app.kubernetes.io/part-of: llminferenceservice
app.kubernetes.io/component: llminferenceservice-workload
{{- else }}
serving.kserve.io/inferenceservice: {{ include "tuneline.fullname" . }}
component: predictor
{{- end }}
{{- end }}

{{/* The port the model server listens on: the runtime's, or vLLM's 8000 under LLMInferenceService. */}}
{{- define "tuneline.servingPort" -}}
{{- if include "tuneline.llmisvc" . }}8000{{ else }}{{ .Values.runtime.port }}{{ end }}
{{- end }}

{{/* A path under /mnt/models (what the storage initializer downloads) as a URI under model.storageUri;
anything else is a Hugging Face hub id. */}}
{{- define "tuneline.modelUri" -}}
{{- $path := index . 0 }}{{- $root := index . 1 }}
{{- if hasPrefix "/mnt/models" $path }}
{{- printf "%s%s" (trimSuffix "/" $root) (trimPrefix "/mnt/models" $path) }}
{{- else }}
{{- printf "hf://%s" $path }}
{{- end }}
{{- end }}

{{/* The URL the helm test calls: helmTest.url, else the gateway (with a route or under LLMInferenceService,
which KServe always routes through a Gateway), else the InferenceService's cluster-local predictor. */}}
{{- define "tuneline.testUrl" -}}
{{- if .Values.helmTest.url }}
{{- .Values.helmTest.url }}
{{- else if or .Values.gateway.enabled (include "tuneline.llmisvc" .) }}
{{- required "gateway.address (the gateway's in-cluster URL) or helmTest.url is needed for the helm test" .Values.gateway.address }}
{{- else }}
{{- printf "http://%s-predictor.%s.svc.cluster.local" (include "tuneline.fullname" .) .Release.Namespace }}
{{- end }}
{{- end }}

{{/* files/platform.json: images, GPU pools and defaults exported from params.yaml. */}}
{{- define "tuneline.platform" -}}
{{- .Files.Get "files/platform.json" }}
{{- end }}

{{- define "tuneline.runtimeKind" -}}
{{- $p := include "tuneline.platform" . | fromJson }}
{{- default $p.runtime .Values.runtime.kind }}
{{- end }}

{{- define "tuneline.runtimeImage" -}}
{{- $p := include "tuneline.platform" . | fromJson }}
{{- $image := default (index $p.images (include "tuneline.runtimeKind" .)) .Values.runtime.image }}
{{- if or (hasSuffix ":latest" $image) (not (regexMatch "(:[^/]+|@sha256:[0-9a-f]{64})$" $image)) }}
{{- fail (printf "runtime.image %q needs an exact tag or digest (not latest)" $image) }}
{{- end }}
{{- $image }}
{{- end }}

{{/* The engine's limits: runtime.* when set, else serve.engine in params.yaml (the values `tuneline serve` runs
with locally). {maxModelLen, maxLoras, maxLoraRank} */}}
{{- define "tuneline.engine" -}}
{{- $p := (include "tuneline.platform" . | fromJson).engine }}
{{- $r := .Values.runtime }}
{{- $adapters := len .Values.model.adapters }}
{{- $maxLoras := int (ternary $p.maxLoras $r.maxLoras (kindIs "invalid" $r.maxLoras)) }}
{{- dict "maxModelLen" (int (ternary $p.maxModelLen $r.maxTotalTokens (kindIs "invalid" $r.maxTotalTokens))) "maxLoras" (max $maxLoras $adapters) "maxLoraRank" (int (ternary $p.maxLoraRank $r.maxLoraRank (kindIs "invalid" $r.maxLoraRank))) "toolCallParser" ($p.toolCallParser | default "") | toJson }}
{{- end }}

{{- define "tuneline.testImage" -}}
{{- $p := include "tuneline.platform" . | fromJson }}
{{- default $p.images.test .Values.helmTest.image }}
{{- end }}

{{- define "tuneline.runtimeName" -}}
{{- printf "%s-%s" (include "tuneline.fullname" .) (include "tuneline.runtimeKind" .) }}
{{- end }}

{{- define "tuneline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "tuneline.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The GPU pool's scheduling for the chosen cloud: {pool, nodeSelector, tolerations, gpusPerNode}. */}}
{{- define "tuneline.gpuScheduling" -}}
{{- $p := include "tuneline.platform" . | fromJson }}
{{- $pool := default $p.gpu .Values.gpu.pool }}
{{- $cloud := default $p.cloud .Values.gpu.cloud }}
{{- if not (hasKey $p.gpuPools $pool) }}
{{- fail (printf "gpu.pool %q has no node pool; infra.gpu_pools has: %s" $pool (keys $p.gpuPools | sortAlpha | join ", ")) }}
{{- end }}
{{- $s := index $p.gpuPools $pool $cloud }}
{{- if gt (int .Values.gpu.count) (int $s.gpusPerNode) }}
{{- fail (printf "gpu.count %d is more than a %s node has on %s (%d)" (int .Values.gpu.count) $pool $cloud (int $s.gpusPerNode)) }}
{{- end }}
{{- toJson $s }}
{{- end }}

{{/* LoRA adapters as TGI's LORA_ADAPTERS / vLLM's --lora-modules want them: name=path. TGI takes a hub
adapter by its id alone (requests then name it by that id), vLLM always as name=id. */}}
{{- define "tuneline.adapterSpecs" -}}
{{- $tgi := eq (include "tuneline.runtimeKind" .) "tgi" }}
{{- $specs := list }}
{{- range .Values.model.adapters }}
{{- if and $tgi (not (hasPrefix "/" .path)) }}
{{- $specs = append $specs .path }}
{{- else }}
{{- $specs = append $specs (printf "%s=%s" .name .path) }}
{{- end }}
{{- end }}
{{- toJson $specs }}
{{- end }}

{{/* The model name a chat request sends: the first adapter, else the registered model. */}}
{{- define "tuneline.servedModel" -}}
{{- if .Values.model.adapters }}{{ (first .Values.model.adapters).name }}{{ else }}{{ .Values.model.name }}{{ end }}
{{- end }}

{{- define "tuneline.queueQuery" -}}
{{- if .Values.autoscaling.keda.query }}
{{- .Values.autoscaling.keda.query }}
{{- else }}
{{- $metric := ternary "tgi_queue_size" "vllm:num_requests_waiting" (eq (include "tuneline.runtimeKind" .) "tgi") }}
{{- printf "sum(%s{%s})" $metric (include "tuneline.podSelector" .) }}
{{- end }}
{{- end }}

{{/* Container resources: the values' CPU and memory plus the GPUs, requested and limited alike. */}}
{{- define "tuneline.resources" -}}
{{- $r := deepCopy .Values.resources }}
{{- $_ := set $r.requests "nvidia.com/gpu" (int .Values.gpu.count) }}
{{- $_ := set $r.limits "nvidia.com/gpu" (int .Values.gpu.count) }}
{{- toYaml $r }}
{{- end }}

{{/* The predictor pods' series in PromQL (the SLO rules and the KEDA query select the same pods). */}}
{{- define "tuneline.podSelector" -}}
{{- printf "namespace=\"%s\", pod=~\"%s-.*\"" .Release.Namespace (include "tuneline.workloadPrefix" .) }}
{{- end }}

{{/* The serving Deployment, whose pods are named after it: <isvc>-predictor (InferenceService),
<llmisvc>-kserve (LLMInferenceService). */}}
{{- define "tuneline.workloadPrefix" -}}
{{- printf "%s-%s" (include "tuneline.fullname" .) (ternary "kserve" "predictor" (eq (include "tuneline.llmisvc" .) "true")) }}
{{- end }}

{{/* vLLM's dynamic adapters: the runtime LoRA API (load/unload without a restart) and the filesystem resolver,
which loads an adapter published into the store on the first request naming it, on every replica. */}}
{{- define "tuneline.adapterStoreEnv" -}}
- name: VLLM_ALLOW_RUNTIME_LORA_UPDATING
  value: "True"
- name: VLLM_PLUGINS
  value: lora_filesystem_resolver
- name: VLLM_LORA_RESOLVER_CACHE_DIR
  value: {{ .Values.adapterStore.mountPath | quote }}
{{- end }}

{{/* The metrics sidecar (files/metrics_proxy.py, run by the runtime's own image): the model server's /metrics on
serviceMonitor.port and nothing else, so Prometheus's NetworkPolicy never admits the inference API. */}}
{{- define "tuneline.metricsSidecar" -}}
{{- $scheme := ternary "https" "http" (not (empty (include "tuneline.llmisvc" .))) -}}
- name: metrics
  image: {{ include "tuneline.runtimeImage" . }}
  imagePullPolicy: IfNotPresent
  command: [python3, /etc/tuneline/metrics_proxy.py]
  args:
    - --port={{ .Values.serviceMonitor.port }}
    - --upstream={{ $scheme }}://127.0.0.1:{{ include "tuneline.servingPort" . }}/metrics
  ports:
    - name: metrics
      containerPort: {{ .Values.serviceMonitor.port }}
      protocol: TCP
  resources:
    requests: {cpu: 10m, memory: 32Mi}
    limits: {memory: 128Mi}
  securityContext:
    {{- toYaml .Values.securityContext | nindent 4 }}
  volumeMounts:
    - name: metrics-proxy
      mountPath: /etc/tuneline
      readOnly: true
{{- end }}

{{- define "tuneline.metricsSidecarVolume" -}}
- name: metrics-proxy
  configMap:
    name: {{ include "tuneline.fullname" . }}-metrics-proxy
{{- end }}
