// Package dashboards holds no code: it is the Grafana dashboards, the
// Prometheus alerting and recording rules, their provisioning and an example
// stack (see README.md). Its tests read every dashboard and rule file and
// check them against what the binary exports (metrics.Names) and with
// Prometheus's own promtool.
package dashboards
