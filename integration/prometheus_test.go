package integration

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"

	"github.com/outrigger/outrigger/internal/testenv"
	"github.com/outrigger/outrigger/metrics"
)

// The dashboard (deploy/grafana) and the rules (deploy/prometheus) checked
// against the code and against a real Prometheus.

const (
	dashboardFile  = "../deploy/grafana/dashboards/outrigger.json"
	promDir        = "../deploy/prometheus"
	recordingFile  = promDir + "/recording.yml"
	alertsFile     = promDir + "/alerts.yml"
	alertTestsFile = promDir + "/alerts_test.yml"
	operationsDoc  = "../docs/operations.md"
	runbookPrefix  = "https://github.com/outrigger/outrigger/blob/main/docs/operations.md#"
)

// The panels that must show data after the test's load, by title. true:
// every query of the panel must; false: at least one. Panels left out
// (TLS, certificates, rejected configs, server connection errors) have
// nothing to show when nothing fails that way.
var panelsWithData = map[string]bool{
	"Success rate (SLO 99.9 %)":                          true,
	"Latency p95 / p99":                                  true,
	"Throughput":                                         true,
	"Error budget burn rate (success SLO)":               true,
	"Latency SLO: share over 250 ms":                     true,
	"Error replies from the server":                      true,
	"Pool saturation (worst instance)":                   true,
	"Pool connections by state vs size":                  true,
	"Clients waiting for a server connection":            true,
	"Pool acquire wait p99":                              true,
	"Upstream connect failures / health":                 true,
	"Config reloads rejected":                            false,
	"Process restarts":                                   true,
	"Uptime":                                             true,
	"Client connections: open, refused":                  false,
	"Redis command latency p99 by command":               true,
	"Redis commands by command and outcome":              true,
	"Refused by policy, and timeouts":                    true,
	"Requests failed in Outrigger, by outcome and class": true,
	"Policy decisions by rule":                           true,
	"Error replies by class":                             true,
	"Postgres pins by reason":                            true,
	"Redis pins by reason":                               true,
	"Prepared statements: hits, misses, evictions":       true,
	"Cancels": true,
	"Postgres transactions and hold time p99": true,
	"Bytes in / out":               true,
	"Upstream connect latency p99": true,
}

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string          `json:"name"`
			Type       string          `json:"type"`
			Query      json.RawMessage `json:"query"`
			Datasource json.RawMessage `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	Panels     []panel         `json:"panels"` // a collapsed row's
	Targets    []struct {
		RefID      string          `json:"refId"`
		Expr       string          `json:"expr"`
		Datasource json.RawMessage `json:"datasource"`
	} `json:"targets"`
}

// query is one PromQL expression to evaluate, and where it comes from.
type query struct {
	where string
	expr  string
	// mustHaveData: the expression must return at least one sample.
	mustHaveData bool
	// panel groups the queries of one panel, for panelsWithData[...] == false.
	panel string
}

func readDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// allPanels flattens rows (a collapsed row holds its panels).
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

var grafanaVarRE = regexp.MustCompile(`\$\{?(\w+)\}?`)

// substitute replaces the dashboard's variables and Grafana's built-in
// intervals the way Grafana would for the given values.
func substitute(t *testing.T, expr string, vars map[string]string) string {
	t.Helper()
	return grafanaVarRE.ReplaceAllStringFunc(expr, func(m string) string {
		name := grafanaVarRE.FindStringSubmatch(m)[1]
		v, ok := vars[name]
		if !ok {
			t.Errorf("%q uses the unknown variable $%s", expr, name)
			return m
		}
		return v
	})
}

var labelValuesRE = regexp.MustCompile(`^label_values\((.*),\s*(\w+)\)$`)

// dashboardQueries is every PromQL expression of the dashboard, variables
// substituted: each panel target and each query variable (label_values(m, l)
// becomes count by (l) (m)).
func dashboardQueries(t *testing.T, d dashboard, vars map[string]string) []query {
	t.Helper()
	var qs []query
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		var q struct {
			Query string `json:"query"`
		}
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var s string
			if json.Unmarshal(v.Query, &s) != nil {
				t.Fatalf("variable %s: query %s", v.Name, v.Query)
			}
			q.Query = s
		}
		m := labelValuesRE.FindStringSubmatch(strings.TrimSpace(q.Query))
		if m == nil {
			t.Fatalf("variable %s: %q is not label_values(metric, label)", v.Name, q.Query)
		}
		qs = append(qs, query{
			where:        "variable " + v.Name,
			expr:         fmt.Sprintf("count by (%s) (%s)", m[2], substitute(t, m[1], vars)),
			mustHaveData: true,
			panel:        "variable " + v.Name,
		})
	}
	for _, p := range allPanels(d.Panels) {
		all, listed := panelsWithData[p.Title]
		for _, tg := range p.Targets {
			qs = append(qs, query{
				where:        fmt.Sprintf("panel %q target %s", p.Title, tg.RefID),
				expr:         substitute(t, tg.Expr, vars),
				mustHaveData: listed && all,
				panel:        p.Title,
			})
		}
	}
	return qs
}

// ruleFile is a Prometheus rule file.
type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Record      string            `yaml:"record"`
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func readRules(t *testing.T, path string) []rule {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var out []rule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatalf("%s: no rules", path)
	}
	return out
}

// githubAnchors returns the anchors GitHub makes for a Markdown file's
// headings: lower case, punctuation dropped, spaces as hyphens, a repeated
// one suffixed -1, -2, ...
func githubAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	seen := map[string]int{}
	inFence := false
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			inFence = !inFence
			continue
		}
		if inFence || !strings.HasPrefix(line, "#") {
			continue
		}
		h := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(h) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

var (
	metricRefRE    = regexp.MustCompile(`\b(?:outrigger|go|process)_[a-z0-9_]*[a-z0-9]`)
	recordingRefRE = regexp.MustCompile(`\boutrigger:[a-z0-9_:]*[a-z0-9]`)
	fqNameRE       = regexp.MustCompile(`fqName: "([^"]+)"`)
)

// registeredMetrics is every metric family metrics.New registers (vectors
// without children included), with the series names of histograms.
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	m := metrics.New(metrics.BuildInfo{})
	ch := make(chan *prometheus.Desc)
	go func() {
		m.Registry.Describe(ch)
		close(ch)
	}()
	known := map[string]bool{}
	for d := range ch {
		if mm := fqNameRE.FindStringSubmatch(d.String()); mm != nil {
			known[mm[1]] = true
		}
	}
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		known[mf.GetName()] = true
	}
	for name := range known {
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			known[name+s] = true
		}
	}
	if len(known) < 50 {
		t.Fatalf("only %d metric names registered; the lookup is broken", len(known))
	}
	return known
}

// TestPrometheusDeployFiles checks the dashboard and the rules without a
// Prometheus: they name only metrics this build exports and recording rules
// that exist, every alert is documented with a runbook anchor that exists,
// and docker-compose mounts what the Prometheus and Grafana configs name.
func TestPrometheusDeployFiles(t *testing.T) {
	known := registeredMetrics(t)
	recording := readRules(t, recordingFile)
	alerts := readRules(t, alertsFile)
	records := map[string]bool{}
	for _, r := range recording {
		if r.Record == "" || r.Alert != "" {
			t.Errorf("%s: %q is not a recording rule", recordingFile, r.Record+r.Alert)
		}
		records[r.Record] = true
	}
	checkNames := func(where, expr string) {
		for _, name := range metricRefRE.FindAllString(expr, -1) {
			if !known[name] {
				t.Errorf("%s: %s is not a metric this build exports", where, name)
			}
		}
		for _, name := range recordingRefRE.FindAllString(expr, -1) {
			if !records[name] {
				t.Errorf("%s: %s is not a rule of %s", where, name, recordingFile)
			}
		}
	}
	for _, r := range recording {
		checkNames("recording rule "+r.Record, r.Expr)
	}

	anchors := githubAnchors(t, operationsDoc)
	if len(anchors) < 20 {
		t.Fatalf("%s: only %d headings found", operationsDoc, len(anchors))
	}
	// The runbook section's own links resolve too.
	doc, err := os.ReadFile(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	section, _, _ := strings.Cut(string(doc)[strings.Index(string(doc), "## Dashboard and alerts")+1:], "\n## ")
	if !strings.Contains(section, "### Alerts") {
		t.Fatalf("%s: no section \"## Dashboard and alerts\" with \"### Alerts\"", operationsDoc)
	}
	for _, m := range regexp.MustCompile(`\]\(#([^)]+)\)`).FindAllStringSubmatch(section, -1) {
		if !anchors[m[1]] {
			t.Errorf("%s, Dashboard and alerts: link #%s is not a heading", operationsDoc, m[1])
		}
	}
	wantAlerts := []string{
		"OutriggerErrorBudgetBurnFast", "OutriggerErrorBudgetBurnSlow",
		"OutriggerLatencyBudgetBurnFast", "OutriggerLatencyBudgetBurnSlow",
		"OutriggerPoolExhausted", "OutriggerTLSHandshakeFailures", "OutriggerCertificateExpiresSoon",
		"OutriggerConfigRejected", "OutriggerUpstreamUnreachable",
	}
	var names []string
	for _, r := range alerts {
		where := "alert " + r.Alert
		if r.Alert == "" {
			t.Errorf("%s: recording rule %s belongs in %s", alertsFile, r.Record, recordingFile)
			continue
		}
		names = append(names, r.Alert)
		checkNames(where, r.Expr)
		if s := r.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("%s: severity %q, want critical or warning", where, s)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("%s: no %s annotation", where, a)
			}
		}
		u := r.Annotations["runbook_url"]
		anchor, ok := strings.CutPrefix(u, runbookPrefix)
		if !ok {
			t.Errorf("%s: runbook_url %q does not point into docs/operations.md (%s...)", where, u, runbookPrefix)
		} else if !anchors[anchor] {
			t.Errorf("%s: runbook_url anchor #%s is not a heading of %s", where, anchor, operationsDoc)
		}
	}
	for _, w := range wantAlerts {
		if !slices.Contains(names, w) {
			t.Errorf("%s: alert %s missing", alertsFile, w)
		}
	}

	d := readDashboard(t)
	var rows []string
	ids := map[int]bool{}
	titles := map[string]bool{}
	vars := map[string]string{"job": ".*", "listener": ".*", "__rate_interval": "1m", "__interval": "15s", "__range": "1h"}
	for _, p := range allPanels(d.Panels) {
		if ids[p.ID] {
			t.Errorf("dashboard: panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			rows = append(rows, strings.SplitN(p.Title, ":", 2)[0])
			continue
		}
		titles[p.Title] = true
		if !strings.Contains(string(p.Datasource), "${datasource}") {
			t.Errorf("dashboard: panel %q does not use the datasource variable: %s", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("dashboard: panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			where := fmt.Sprintf("dashboard panel %q %s", p.Title, tg.RefID)
			checkNames(where, tg.Expr)
			if !strings.Contains(tg.Expr, `job=~"$job"`) {
				t.Errorf("%s: does not filter on $job: %s", where, tg.Expr)
			}
		}
	}
	if want := []string{"Executive", "On-call", "Debug"}; !slices.Equal(rows, want) {
		t.Errorf("dashboard rows %v, want %v", rows, want)
	}
	for title := range panelsWithData {
		if !titles[title] {
			t.Errorf("panelsWithData names %q, which is not a dashboard panel", title)
		}
	}
	for _, q := range dashboardQueries(t, d, vars) {
		checkNames(q.where, q.expr)
	}

	// docker-compose mounts the rule files prometheus.yml loads, and the
	// dashboards folder the Grafana provider reads.
	raw, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	mounted := func(service, container string) string {
		for _, v := range compose.Services[service].Volumes {
			if parts := strings.Split(v, ":"); len(parts) >= 2 && parts[1] == container {
				return parts[0]
			}
		}
		return ""
	}
	var promCfg struct {
		RuleFiles []string `yaml:"rule_files"`
	}
	raw, err = os.ReadFile(promDir + "/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &promCfg); err != nil {
		t.Fatal(err)
	}
	wantRules := map[string]bool{"recording.yml": false, "alerts.yml": false}
	for _, f := range promCfg.RuleFiles {
		host := mounted("prometheus", f)
		if host == "" {
			t.Errorf("prometheus.yml loads %s, which docker-compose does not mount", f)
			continue
		}
		wantRules[filepath.Base(host)] = true
	}
	for f, ok := range wantRules {
		if !ok {
			t.Errorf("docker-compose's Prometheus does not load deploy/prometheus/%s", f)
		}
	}
	var prov struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	raw, err = os.ReadFile("../deploy/grafana/provisioning/dashboards/outrigger.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &prov); err != nil {
		t.Fatal(err)
	}
	if len(prov.Providers) != 1 {
		t.Fatalf("grafana dashboard providers: %d, want 1", len(prov.Providers))
	}
	if host := mounted("grafana", prov.Providers[0].Options.Path); filepath.Clean(host) != "deploy/grafana/dashboards" {
		t.Errorf("grafana reads dashboards from %s, which docker-compose mounts from %q, not ./deploy/grafana/dashboards",
			prov.Providers[0].Options.Path, host)
	}
}

// TestPrometheusEndToEnd is the observability "done when": a real
// Prometheus scrapes an Outrigger with a postgres and two redis listeners
// under load, loads the rules, and every dashboard query and every rule
// evaluates against it; the key panels show data. The policy denies a
// statement and a command that the load sends, and rate-limits one
// Postgres user, so every outcome but timeout has series. The error-budget
// alert goes pending for the Redis listener whose upstream is down, and
// stays quiet for the two listeners whose only failures are the policy's
// refusals and the server's own error replies.
func TestPrometheusEndToEnd(t *testing.T) {
	integrationOnly(t)
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("prometheus is not installed (scripts/deps.sh installs the Debian package prometheus)")
	}
	start := time.Now()
	absRules := []string{}
	for _, f := range []string{recordingFile, alertsFile} {
		a, err := filepath.Abs(f)
		if err != nil {
			t.Fatal(err)
		}
		absRules = append(absRules, a)
	}
	if promtool, err := exec.LookPath("promtool"); err == nil {
		if out, err := exec.Command(promtool, append([]string{"check", "rules"}, absRules...)...).CombinedOutput(); err != nil {
			t.Fatalf("promtool check rules: %v\n%s", err, out)
		}
		cmd := exec.Command(promtool, "test", "rules", filepath.Base(alertTestsFile))
		cmd.Dir = promDir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("promtool test rules %s: %v\n%s", alertTestsFile, err, out)
		}
	} else {
		t.Log("promtool is not installed: rule syntax is checked by Prometheus loading them only")
	}

	// Prometheus first: it takes a few seconds to start scraping, which the
	// servers' start overlaps.
	adminAddr := testenv.FreeAddr(t)
	prom := startPrometheus(t, promBin, adminAddr, absRules)
	pg := testenv.StartPostgres(t, testenv.PostgresOptions{})
	rd := testenv.StartRedis(t, testenv.RedisOptions{})
	pgAddr, rdAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	// "down" proxies to an address nothing listens on.
	downAddr, deadAddr := testenv.FreeAddr(t), testenv.FreeAddr(t)
	cfg := pgProxyConfig(pgAddr, pg.Addr(), "transaction", 3, "") + fmt.Sprintf(`redis:
  - name: cache
    listen: %q
    upstream: {address: %q}
    pool: {size: 2}
  - name: down
    listen: %q
    upstream: {address: %q}
    pool: {size: 1}
policy:
  default: allow
  rules:
    - name: appdb-no-ddl
      when: {listener: appdb}
      postgres: {statements: [select, insert, update, delete, transaction, set, show]}
    - name: cache-load-keys
      when: {listener: cache}
      redis: {categories: ["@all"], keys: ["load:*"]}
  rate_limits:
    - name: appdb-superuser
      when: {listener: appdb, user: postgres}
      rate: 2
      burst: 1
      per: user
      on_limit: reject
`, rdAddr, rd.Addr, downAddr, deadAddr)
	const anyAdmin = `admin: {listen: "127.0.0.1:0"}`
	if !strings.Contains(cfg, anyAdmin) {
		t.Fatalf("pgProxyConfig no longer starts with %s:\n%s", anyAdmin, cfg)
	}
	o := startOutrigger(t, strings.Replace(cfg, anyAdmin, fmt.Sprintf("admin: {listen: %q}", adminAddr), 1))
	p := &pgProxy{outrigger: o, PG: pg, Addr: pgAddr}
	prom.waitScraped(t)
	t.Logf("servers up and scraped after %v", time.Since(start).Round(time.Millisecond))

	loadStart := time.Now()
	counts := driveLoad(t, p, rdAddr, downAddr, 5*time.Second)
	t.Logf("load: %v in %v", counts, time.Since(loadStart).Round(time.Millisecond))

	vars := map[string]string{
		"job": "outrigger", "listener": "appdb|cache|down",
		"__rate_interval": "1m", "__interval": "15s", "__range": "5m",
	}
	d := readDashboard(t)
	qs := dashboardQueries(t, d, vars)
	recording := readRules(t, recordingFile)
	alerts := readRules(t, alertsFile)
	for _, r := range recording {
		qs = append(qs,
			query{where: "recording rule " + r.Record, expr: r.Expr, mustHaveData: true, panel: r.Record},
			query{where: "recorded series " + r.Record, expr: r.Record, mustHaveData: true, panel: r.Record + " (recorded)"})
	}
	for _, r := range alerts {
		qs = append(qs, query{where: "alert " + r.Alert, expr: r.Expr, panel: r.Alert})
	}

	// Wait for Prometheus to scrape the end of the load and evaluate every
	// rule over it.
	loadEnd := time.Now()
	deadline := time.Now().Add(30 * time.Second)
	for {
		rules, err := prom.rules()
		pending := 0
		if err == nil {
			for _, r := range rules {
				if r.Health == "unknown" || r.LastEvaluation.Before(loadEnd.Add(2*time.Second)) {
					pending++
				}
			}
		}
		if err == nil && pending == 0 && len(rules) == len(recording)+len(alerts) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rules not all evaluated after the load (%d loaded, %d pending, err %v)\n%s", len(rules), pending, err, prom.logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	rules, _ := prom.rules()
	for _, r := range rules {
		if r.Health != "ok" {
			t.Errorf("rule %s (%s): health %q: %s", r.Name, r.Type, r.Health, r.LastError)
		}
	}

	anyData := map[string]bool{}
	empty := map[string][]string{}
	for _, q := range qs {
		n, err := prom.query(q.expr)
		if err != nil {
			t.Errorf("%s: %v\n  %s", q.where, err, q.expr)
			continue
		}
		if n > 0 {
			anyData[q.panel] = true
			continue
		}
		empty[q.panel] = append(empty[q.panel], q.where)
		if q.mustHaveData {
			t.Errorf("%s: no data\n  %s", q.where, q.expr)
		}
	}
	for title, all := range panelsWithData {
		if !all && !anyData[title] {
			t.Errorf("panel %q: no query returned data", title)
		}
	}
	// Under this load every recording rule has a series for each listener:
	// the pool rule only for the postgres one, which has pools, and the
	// refusals only where the policy refused something.
	for _, r := range recording {
		want := []string{"appdb", "cache", "down"}
		switch r.Record {
		case "outrigger:pool_in_use:ratio":
			want = []string{"appdb"}
		case "outrigger:requests_refused:rate5m":
			want = []string{"appdb", "cache"}
		}
		got, err := prom.labelValues(r.Record, "listener")
		if err != nil {
			t.Errorf("%s: %v", r.Record, err)
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: series for listeners %v, want %v", r.Record, got, want)
		}
	}
	// The SLI leaves the refused requests out, and counts only what
	// Outrigger failed: nothing on appdb and cache, everything on down.
	for listener, want := range map[string]float64{"appdb": 0, "cache": 0, "down": 1} {
		v, err := prom.value(fmt.Sprintf(`outrigger:requests_failed:ratio_rate5m{listener=%q}`, listener))
		if err != nil || v != want {
			t.Errorf("outrigger:requests_failed:ratio_rate5m{listener=%q} = %v (%v), want %v", listener, v, err, want)
		}
	}

	var quiet []string
	for p := range empty {
		if !anyData[p] {
			quiet = append(quiet, p)
		}
	}
	sort.Strings(quiet)
	t.Logf("%d expressions evaluated; with no data under this load (nothing failed that way): %s", len(qs), strings.Join(quiet, "; "))

	// Every command of "down" fails in the proxy: its fast error-budget
	// alert is pending (for: 2m), and so is the alert on its upstream.
	// appdb and cache refuse a tenth of their requests by policy (and get
	// a twentieth and a fifteenth back as the server's error replies),
	// which burns nothing.
	alertsNow, err := prom.alerts()
	if err != nil {
		t.Fatal(err)
	}
	var burning, unreachable bool
	for _, a := range alertsNow {
		active := a.State == "pending" || a.State == "firing"
		switch {
		case a.Labels["alertname"] == "OutriggerErrorBudgetBurnFast" && a.Labels["listener"] == "down":
			burning = active
		case a.Labels["alertname"] == "OutriggerUpstreamUnreachable" && a.Labels["listener"] == "down":
			unreachable = active
		case a.Labels["listener"] != "down" && strings.HasPrefix(a.Labels["alertname"], "OutriggerErrorBudget"):
			t.Errorf("alert %s is %s for %s, which the proxy failed nothing of", a.Labels["alertname"], a.State, a.Labels["listener"])
		}
	}
	if !burning || !unreachable {
		for _, e := range []string{"outrigger:requests_failed:ratio_rate5m", "outrigger:requests_failed:ratio_rate1h", "outrigger_upstream_healthy"} {
			var d struct {
				Result []json.RawMessage `json:"result"`
			}
			err := prom.api("/api/v1/query", url.Values{"query": {e}}, &d)
			t.Logf("%s: %v %s", e, err, d.Result)
		}
		t.Errorf("OutriggerErrorBudgetBurnFast (%v) and OutriggerUpstreamUnreachable (%v) should both be pending for listener down; alerts: %+v",
			burning, unreachable, alertsNow)
	}
	t.Logf("whole test: %v", time.Since(start).Round(time.Millisecond))
}

// loadCounts is what driveLoad did.
type loadCounts struct {
	PGQueries, PGErrors, PGCancels, PGDenied, PGRateLimited int64
	RedisCommands, RedisDenied, RedisErrors, DownFailed     int64
}

// driveLoad sends Postgres round trips (prepared statements, transactions,
// errors, a pin, cancels, statements the policy denies or rate-limits) and
// Redis commands (pipelines, MULTI, error replies, commands the policy
// denies) through the proxy for d, and commands to the Redis listener at
// downAddr, whose upstream is unreachable.
func driveLoad(t *testing.T, p *pgProxy, rdAddr, downAddr string, d time.Duration) loadCounts {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var c struct{ pgQ, pgE, pgC, pgD, pgR, rdC, rdD, rdE, downF atomic.Int64 }
	var wg sync.WaitGroup
	// A failed connect: the clients started use conns closed at cleanup.
	defer func() { cancel(); wg.Wait() }()
	fail := make(chan error, 32)
	report := func(err error) {
		select {
		case fail <- err:
		default:
		}
	}
	done := func(err error) bool { return ctx.Err() != nil && err != nil }

	// Postgres: six clients on a pool of three, so some of them queue.
	for i := range 6 {
		conn := p.connect(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				var err error
				switch {
				case n%20 == 0: // an error reply from the server
					_, err = conn.Exec(ctx, "SELECT 1/0")
					if err != nil && ctx.Err() == nil && sqlState(err) == "22012" {
						c.pgE.Add(1)
						continue
					}
				case n%10 == 5: // DDL, which the policy denies
					_, err = conn.Exec(ctx, "CREATE TABLE denied_by_policy ()")
					if err != nil && ctx.Err() == nil && sqlState(err) == "42501" {
						c.pgD.Add(1)
						continue
					}
					if err == nil {
						err = errors.New("CREATE TABLE passed the policy")
					}
				case n%5 == 0: // a transaction
					err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
						_, err := tx.Exec(ctx, "SELECT pg_sleep(0.005)")
						return err
					})
				default: // a prepared statement, from pgx's statement cache
					var v int
					err = conn.QueryRow(ctx, "SELECT $1::int + $2::int", n, i).Scan(&v)
				}
				if done(err) {
					return
				}
				if err != nil {
					report(fmt.Errorf("pg client %d: %w", i, err))
					return
				}
				c.pgQ.Add(1)
			}
		}()
	}
	// A client pinned by an advisory lock, whose slow queries it cancels.
	pinned := p.connect(t)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := pinned.Exec(ctx, "SELECT pg_advisory_lock(42)"); err != nil {
			report(fmt.Errorf("advisory lock: %w", err))
			return
		}
		for ctx.Err() == nil {
			errc := make(chan error, 1)
			go func() {
				_, err := pinned.Exec(context.Background(), "SELECT pg_sleep(5)")
				errc <- err
			}()
			var err error
		wait:
			for {
				select {
				case err = <-errc:
					break wait
				case <-time.After(100 * time.Millisecond):
					cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
					if cerr := pinned.PgConn().CancelRequest(cctx); cerr != nil {
						report(fmt.Errorf("cancel request: %w", cerr))
					}
					ccancel()
				}
			}
			if sqlState(err) != "57014" {
				report(fmt.Errorf("cancelled pg_sleep(5): %v, want SQLSTATE 57014", err))
				return
			}
			c.pgC.Add(1)
		}
	}()

	// A superuser client, rate-limited to 2 statements a second.
	limited, err := pgx.Connect(ctx, p.dsn("postgres", "postgres", "app"))
	if err != nil {
		t.Fatalf("connect as postgres: %v", err)
	}
	t.Cleanup(func() { limited.Close(context.Background()) })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			_, err := limited.Exec(ctx, "SELECT 1")
			switch {
			case err == nil:
				c.pgQ.Add(1)
			case sqlState(err) == "53400":
				c.pgR.Add(1)
			case done(err):
				return
			default:
				report(fmt.Errorf("rate-limited client: %w", err))
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()

	// Redis: four clients; the policy denies every tenth command (a key
	// outside load:*).
	for i := range 4 {
		rc := proxyClient(t, rdAddr, 3)
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("load:%d", i)
			for n := 0; ctx.Err() == nil; n++ {
				var err error
				switch {
				case n%10 == 0:
					err = rc.Get(ctx, "secret").Err()
					if err != nil && strings.HasPrefix(err.Error(), "NOPERM") {
						c.rdD.Add(1)
						continue
					}
					if err == nil || errors.Is(err, redis.Nil) {
						err = errors.New("GET secret passed the policy")
					}
				case n%15 == 1:
					rc.Set(ctx, key+":s", "text", 0)
					err = rc.Incr(ctx, key+":s").Err()
					if err != nil && strings.Contains(err.Error(), "not an integer") {
						c.rdE.Add(1)
						c.rdC.Add(2)
						continue
					}
				case n%7 == 0:
					_, err = rc.TxPipelined(ctx, func(pp redis.Pipeliner) error {
						pp.Incr(ctx, key)
						pp.Expire(ctx, key, time.Minute)
						return nil
					})
				case n%3 == 0:
					_, err = rc.Pipelined(ctx, func(pp redis.Pipeliner) error {
						for j := range 5 {
							pp.Set(ctx, fmt.Sprintf("%s:%d", key, j), n, time.Minute)
						}
						return nil
					})
				default:
					err = rc.Get(ctx, key).Err()
					if errors.Is(err, redis.Nil) {
						err = nil
					}
				}
				if done(err) {
					return
				}
				if err != nil {
					report(fmt.Errorf("redis client %d: %w", i, err))
					return
				}
				c.rdC.Add(1)
			}
		}()
	}
	// "down": one client over raw RESP (a client library would give up
	// at its handshake); every GET gets an error reply from the proxy.
	wg.Add(1)
	go func() {
		defer wg.Done()
		var dl net.Dialer
		conn, err := dl.DialContext(ctx, "tcp", downAddr)
		if err != nil {
			report(fmt.Errorf("dial down: %w", err))
			return
		}
		defer conn.Close()
		context.AfterFunc(ctx, func() { conn.Close() })
		r := bufio.NewReader(conn)
		for ctx.Err() == nil {
			if _, err := io.WriteString(conn, "*2\r\n$3\r\nGET\r\n$9\r\nload:down\r\n"); err != nil {
				if ctx.Err() == nil {
					report(fmt.Errorf("down: %w", err))
				}
				return
			}
			line, err := r.ReadString('\n')
			if err != nil {
				if ctx.Err() == nil {
					report(fmt.Errorf("down: %w", err))
				}
				return
			}
			if !strings.HasPrefix(line, "-") {
				report(fmt.Errorf("down: GET got %q, want an error reply", line))
				return
			}
			c.downF.Add(1)
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
		}
	}()

	wg.Wait()
	close(fail)
	for err := range fail {
		t.Error(err)
	}
	lc := loadCounts{
		PGQueries: c.pgQ.Load(), PGErrors: c.pgE.Load(), PGCancels: c.pgC.Load(), PGDenied: c.pgD.Load(), PGRateLimited: c.pgR.Load(),
		RedisCommands: c.rdC.Load(), RedisDenied: c.rdD.Load(), RedisErrors: c.rdE.Load(), DownFailed: c.downF.Load(),
	}
	if lc.PGQueries == 0 || lc.PGErrors == 0 || lc.PGCancels == 0 || lc.PGDenied == 0 || lc.PGRateLimited == 0 ||
		lc.RedisCommands == 0 || lc.RedisDenied == 0 || lc.RedisErrors == 0 || lc.DownFailed == 0 {
		t.Fatalf("the load did not do everything it should: %+v", lc)
	}
	return lc
}

// promServer is a Prometheus run by a test.
type promServer struct {
	base string
	logs *testenv.SyncBuffer
}

// startPrometheus runs prometheus on a free port, scraping target's
// /metrics every second and evaluating rules every second, with its data in
// a temp dir. It is stopped (by its PID) when the test ends.
func startPrometheus(t *testing.T, bin, target string, ruleFiles []string) *promServer {
	t.Helper()
	dir := t.TempDir()
	var rf strings.Builder
	for _, f := range ruleFiles {
		fmt.Fprintf(&rf, "  - %q\n", f)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
%sscrape_configs:
  - job_name: outrigger
    static_configs:
      - targets: [%q]
`, rf.String(), target)
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	s := &promServer{base: "http://" + addr, logs: &testenv.SyncBuffer{}}
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--log.level=warn")
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("prometheus log:\n%s", s.logs)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(s.base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("prometheus exited:\n%s", s.logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready at %s:\n%s", addr, s.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return s
}

// waitScraped waits for the first successful scrape of the target: service
// discovery hands it over only about 5 s after the start.
func (s *promServer) waitScraped(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, err := s.query(`up{job="outrigger"} == 1`)
		if err == nil && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus has not scraped Outrigger (%v):\n%s", err, s.logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// api GETs an HTTP API path and decodes its data.
func (s *promServer) api(path string, params url.Values, data any) error {
	resp, err := http.Get(s.base + path + "?" + params.Encode())
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	var r struct {
		Status    string          `json:"status"`
		Error     string          `json:"error"`
		ErrorType string          `json:"errorType"`
		Warnings  []string        `json:"warnings"`
		Data      json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return fmt.Errorf("%s: %v: %s", path, err, body)
	}
	if r.Status != "success" {
		return fmt.Errorf("%s: %s: %s", path, r.ErrorType, r.Error)
	}
	if len(r.Warnings) > 0 {
		return fmt.Errorf("%s: warnings: %v", path, r.Warnings)
	}
	return json.Unmarshal(r.Data, data)
}

// query evaluates expr now and returns how many series it gave.
func (s *promServer) query(expr string) (int, error) {
	var d struct {
		ResultType string            `json:"resultType"`
		Result     []json.RawMessage `json:"result"`
	}
	if err := s.api("/api/v1/query", url.Values{"query": {expr}}, &d); err != nil {
		return 0, err
	}
	if d.ResultType == "scalar" || d.ResultType == "string" {
		return 1, nil
	}
	return len(d.Result), nil
}

// value evaluates expr now and returns its one sample's value.
func (s *promServer) value(expr string) (float64, error) {
	var d struct {
		Result []struct {
			Value [2]any `json:"value"`
		} `json:"result"`
	}
	if err := s.api("/api/v1/query", url.Values{"query": {expr}}, &d); err != nil {
		return 0, err
	}
	if len(d.Result) != 1 {
		return 0, fmt.Errorf("%s: %d samples, want 1", expr, len(d.Result))
	}
	v, _ := d.Result[0].Value[1].(string)
	var f float64
	_, err := fmt.Sscan(v, &f)
	return f, err
}

// labelValues evaluates expr now and returns the sorted distinct values of
// label in its result.
func (s *promServer) labelValues(expr, label string) ([]string, error) {
	var d struct {
		Result []struct {
			Metric map[string]string `json:"metric"`
		} `json:"result"`
	}
	if err := s.api("/api/v1/query", url.Values{"query": {expr}}, &d); err != nil {
		return nil, err
	}
	var out []string
	for _, r := range d.Result {
		if v := r.Metric[label]; !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	sort.Strings(out)
	return out, nil
}

type promRule struct {
	Name           string    `json:"name"`
	Type           string    `json:"type"`
	Health         string    `json:"health"`
	LastError      string    `json:"lastError"`
	LastEvaluation time.Time `json:"lastEvaluation"`
}

func (s *promServer) rules() ([]promRule, error) {
	var d struct {
		Groups []struct {
			Rules []promRule `json:"rules"`
		} `json:"groups"`
	}
	if err := s.api("/api/v1/rules", nil, &d); err != nil {
		return nil, err
	}
	var out []promRule
	for _, g := range d.Groups {
		out = append(out, g.Rules...)
	}
	return out, nil
}

type promAlert struct {
	Labels map[string]string `json:"labels"`
	State  string            `json:"state"`
}

func (s *promServer) alerts() ([]promAlert, error) {
	var d struct {
		Alerts []promAlert `json:"alerts"`
	}
	err := s.api("/api/v1/alerts", nil, &d)
	return d.Alerts, err
}
