// Package deploy holds the Kubernetes manifests (sidecar/, daemonset/) and
// the tests that keep them, the Dockerfile and the docs honest: every
// manifest is decoded strictly with the Kubernetes API types, and the sidelog
// config inside each ConfigMap is loaded with the agent's own loader.
package deploy
