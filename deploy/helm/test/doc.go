// Package test renders the sidelog Helm chart (../sidelog) with the Helm
// engine and checks what it renders. It is its own Go module: Helm, the
// Prometheus operator's types and the PromQL parser are heavy, and the
// agent's module does not need them.
package test
