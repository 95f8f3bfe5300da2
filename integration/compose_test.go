package integration

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/outrigger/outrigger/cmd/outrigger/cli"
)

// TestDockerCompose validates docker-compose.yml without a Docker engine: it
// parses, has the services the docs promise, every file it mounts or builds
// from exists, and the outrigger config it mounts passes `outrigger check`.
func TestDockerCompose(t *testing.T) {
	root := ".."
	raw, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Image   string   `yaml:"image"`
			Command []string `yaml:"command"`
			Build   *struct {
				Context    string `yaml:"context"`
				Dockerfile string `yaml:"dockerfile"`
			} `yaml:"build"`
			Volumes []string `yaml:"volumes"`
			Ports   []string `yaml:"ports"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatalf("docker-compose.yml does not parse: %v", err)
	}
	for _, want := range []string{"postgres", "redis", "outrigger", "prometheus", "grafana"} {
		if _, ok := compose.Services[want]; !ok {
			t.Errorf("service %q missing", want)
		}
	}
	o := compose.Services["outrigger"]
	if o.Build == nil {
		t.Fatal("outrigger is not built from the repository")
	}
	df := filepath.Join(root, o.Build.Context, o.Build.Dockerfile)
	dockerfile, err := os.ReadFile(df)
	if err != nil {
		t.Fatalf("dockerfile: %v", err)
	}
	stages := 0
	for _, line := range strings.Split(string(dockerfile), "\n") {
		if strings.HasPrefix(line, "FROM ") {
			stages++
		}
	}
	if stages < 2 {
		t.Errorf("%s is not a multi-stage build", df)
	}

	var outriggerConfig string
	for name, svc := range compose.Services {
		for _, v := range svc.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 || !strings.HasPrefix(parts[0], ".") {
				continue // a named volume
			}
			host := filepath.Join(root, parts[0])
			if _, err := os.Stat(host); err != nil {
				t.Errorf("service %s mounts %s, which does not exist", name, parts[0])
			}
			if name == "outrigger" && strings.HasSuffix(parts[1], ".yaml") {
				outriggerConfig = host
			}
		}
	}
	if outriggerConfig == "" {
		t.Fatal("the outrigger service mounts no config")
	}
	var out bytes.Buffer
	if code := cli.Main(context.Background(), []string{"check", "-c", outriggerConfig}, cli.Options{Stdout: &out, Stderr: &out, Environ: []string{}}); code != 0 {
		t.Errorf("outrigger check %s failed:\n%s", outriggerConfig, &out)
	}
	// The command the container runs names the mounted path.
	found := false
	for _, v := range o.Volumes {
		if parts := strings.Split(v, ":"); len(parts) >= 2 && strings.Contains(strings.Join(o.Command, " "), parts[1]) {
			found = true
		}
	}
	if !found {
		t.Errorf("outrigger command %v does not use its mounted config", o.Command)
	}
}

// TestKubernetesManifests checks that deploy/kubernetes parses and that the
// outrigger config in its ConfigMap passes `outrigger check`.
func TestKubernetesManifests(t *testing.T) {
	paths, _ := filepath.Glob("../deploy/kubernetes/*.yaml")
	if len(paths) == 0 {
		t.Fatal("no manifests")
	}
	checked := 0
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		for {
			var doc struct {
				Kind string            `yaml:"kind"`
				Data map[string]string `yaml:"data"`
			}
			if err := dec.Decode(&doc); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				t.Fatalf("%s: %v", p, err)
			}
			cfg, ok := doc.Data["outrigger.yaml"]
			if doc.Kind != "ConfigMap" || !ok {
				continue
			}
			f := filepath.Join(t.TempDir(), "outrigger.yaml")
			os.WriteFile(f, []byte(cfg), 0o644)
			var out bytes.Buffer
			if code := cli.Main(context.Background(), []string{"check", "-c", f}, cli.Options{Stdout: &out, Stderr: &out, Environ: []string{}}); code != 0 {
				t.Errorf("%s: ConfigMap config fails check:\n%s", p, &out)
			}
			checked++
		}
	}
	if checked == 0 {
		t.Error("no ConfigMap with outrigger.yaml found")
	}
}
