// Package docs holds the tests that keep Outrigger's documentation true: the
// README and the Markdown files in this folder (configuration reference,
// metrics catalog, operations runbook). It has no code of its own.
//
// docs_test.go loads every YAML config example with config.Load, checks that
// docs/configuration.md lists every key of the config schema with its type and
// its `default` tag, that docs/metrics.md lists every metric that metrics.New
// registers (and no metric that does not exist), and that the flags,
// environment variables and alert expressions the docs quote match the code
// and deploy/prometheus/alerts.yml. A change to the code that the docs do not
// follow fails `go test ./docs/`.
package docs
