package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestObservabilityDefaults(t *testing.T) {
	cfg, err := load(t, ``)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		got, want any
	}{
		{"access_log.enabled", cfg.AccessLog.Enabled, false},
		{"access_log.output", cfg.AccessLog.Output, "stderr"},
		{"access_log.sample_rate", cfg.AccessLog.SampleRate, 0.01},
		{"access_log.slow_threshold", cfg.AccessLog.SlowThreshold, time.Second},
		{"access_log.max_statement_length", cfg.AccessLog.MaxStatementLength, 2048},
		{"tracing.endpoint", cfg.Tracing.Endpoint, ""},
		{"tracing.sample_ratio", cfg.Tracing.SampleRatio, 0.01},
		{"tracing.service_name", cfg.Tracing.ServiceName, "outrigger"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestObservabilityValidate(t *testing.T) {
	_, err := load(t, `
access_log: {enabled: true, output: /no/such/dir/access.log, sample_rate: 2, slow_threshold: -1s, max_statement_length: 3}
tracing: {endpoint: "collector:4318", sample_ratio: -0.5, service_name: ""}
`)
	if err == nil {
		t.Fatal("accepted")
	}
	text := err.Error()
	for _, w := range []string{
		"access_log.output: stat /no/such/dir",
		"access_log.sample_rate: must be between 0 and 1",
		"access_log.slow_threshold: must be >= 0",
		"access_log.max_statement_length: must be >= 16",
		"tracing.endpoint:",
		"tracing.sample_ratio: must be between 0 and 1",
		"tracing.service_name: required",
	} {
		if !strings.Contains(text, w) {
			t.Errorf("missing %q in:\n%s", w, text)
		}
	}
	if n := len(Flatten(err)); n != 7 {
		t.Errorf("%d errors, want 7:\n%s", n, text)
	}
}

// TestAccessLogOutputRelative: a relative access_log.output is a file next
// to the config file; stderr and stdout are kept as words.
func TestAccessLogOutputRelative(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "outrigger.yaml")
	if err := os.WriteFile(path, []byte("access_log: {output: access.log}\ntracing: {endpoint: \"http://127.0.0.1:4318/v1/traces\", sample_ratio: 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(Source{Path: path, Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "access.log"); cfg.AccessLog.Output != want {
		t.Errorf("access_log.output = %q, want %q", cfg.AccessLog.Output, want)
	}
	cfg, err = load(t, `access_log: {output: stdout}`)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.AccessLog.Output != "stdout" {
		t.Errorf("access_log.output = %q, want stdout", cfg.AccessLog.Output)
	}
}
