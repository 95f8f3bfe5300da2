package docs

// These tests keep README.md and docs/*.md true to the code. They read the
// Markdown as text, so the conventions below are part of the docs' format.
//
// Code fences. A fence whose info string is exactly "yaml" or "yml" holds a
// complete Outrigger config: TestYAMLExamplesLoad writes it to outrigger.yaml
// in a temp dir, creates the files it names by relative path (TLS files,
// password files) next to it, and loads it with config.Load. Any other YAML
// block names what it is with a second word in its info string, which
// Markdown renderers ignore when they highlight: "yaml fragment" (part of a
// config shown out of context), "yaml kubernetes", "yaml compose" or
// "yaml prometheus". Those are only parsed as YAML. Any other second word is
// an error, so a typo cannot quietly exempt a block.
//
// Config tables (docs/configuration.md) have the header
// "| key | type | default | meaning |". The key cell is one key path in
// backticks, with "[]" for list items, "<name>" for the keys of the tls map,
// and the shared shapes written once: "<listener>.name" for the keys every
// listener has and "<upstream>.address" for the keys of every upstream. The
// default cell is the field's `default` tag in backticks, or "required" or
// "none" when the field has no tag. A list-typed key's default tag is a
// list written "[a, b]" (config.Load reads it so), and the cell shows the
// tag as it is. A pipe inside a cell is written "\|", as GitHub-flavoured
// Markdown wants it, even inside backticks (a refuse_commands default names
// "client|kill"); any other pipe ends the cell.
//
// Metric tables (docs/metrics.md) have the header
// "| metric | type | labels | meaning |"; the labels cell lists label names
// in backticks, separated by commas, or says "none".

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/outrigger/outrigger/cmd/outrigger/cli"
	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/internal/testenv"
	"github.com/outrigger/outrigger/metrics"
	"github.com/outrigger/outrigger/sidecar"
)

// Secret values that examples reference. The test checks that neither shows
// up when a loaded config is marshalled the way GET /config does it.
const (
	envSecret  = "env-secret-7d1f0c"
	fileSecret = "file-secret-93ab2e"
)

// exampleEnv is the whole environment the YAML examples are loaded with
// (nothing from the test process leaks in).
var exampleEnv = []string{
	"APP_DB_PASSWORD=" + envSecret,
	"REPORTING_DB_PASSWORD=" + envSecret,
}

// nonConfigYAML are the second words that mark a YAML block as something
// other than a complete Outrigger config.
var nonConfigYAML = []string{"fragment", "kubernetes", "compose", "prometheus"}

// minConfigBlocks is how many complete config examples each file has at
// least, so that a broken fence parser cannot make the test pass on nothing.
var minConfigBlocks = map[string]int{
	"../README.md":     1,
	"configuration.md": 10,
	"operations.md":    2,
}

// docFiles are README.md and every Markdown file in this folder.
func docFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"configuration.md", "metrics.md", "operations.md"} {
		if !slices.Contains(files, want) {
			t.Errorf("docs/%s is missing", want)
		}
	}
	return append([]string{"../README.md"}, files...)
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// block is one fenced code block.
type block struct {
	file string
	line int    // of the opening fence, 1-based
	info string // the info string, trimmed
	body string
}

func (b block) String() string { return fmt.Sprintf("%s:%d", b.file, b.line) }

// lang is the first word of the info string.
func (b block) lang() string {
	f := strings.Fields(b.info)
	if len(f) == 0 {
		return ""
	}
	return f[0]
}

var fenceRE = regexp.MustCompile("^( *)(```+|~~~+)(.*)$")

// fences returns the fenced code blocks of a Markdown file. Fences may be
// indented (inside list items); the indentation is stripped from the body.
func fences(t *testing.T, path string) []block {
	t.Helper()
	var out []block
	var cur *block
	var indent, marker string
	var body []string
	for i, line := range strings.Split(read(t, path), "\n") {
		m := fenceRE.FindStringSubmatch(line)
		if cur == nil {
			if m != nil {
				cur = &block{file: path, line: i + 1, info: strings.TrimSpace(m[3])}
				indent, marker, body = m[1], m[2], nil
			}
			continue
		}
		if m != nil && strings.HasPrefix(m[2], marker) && strings.TrimSpace(m[3]) == "" {
			cur.body = strings.Join(body, "\n") + "\n"
			out = append(out, *cur)
			cur = nil
			continue
		}
		body = append(body, strings.TrimPrefix(line, indent))
	}
	if cur != nil {
		t.Errorf("%s: fence not closed", cur)
	}
	return out
}

// TestYAMLExamplesLoad loads every complete config example and parses every
// other YAML block.
func TestYAMLExamplesLoad(t *testing.T) {
	counts := map[string]int{}
	var full bool
	for _, file := range docFiles(t) {
		for _, b := range fences(t, file) {
			lang := b.lang()
			if lang != "yaml" && lang != "yml" {
				continue
			}
			if words := strings.Fields(b.info); len(words) > 1 {
				if len(words) != 2 || !slices.Contains(nonConfigYAML, words[1]) {
					t.Errorf("%s: info string %q: a YAML block is either a complete config (just `yaml`) or `yaml X` with X one of %v", b, b.info, nonConfigYAML)
					continue
				}
				dec := yaml.NewDecoder(strings.NewReader(b.body))
				for {
					var v any
					if err := dec.Decode(&v); err != nil {
						if !errors.Is(err, io.EOF) {
							t.Errorf("%s: not YAML: %v", b, err)
						}
						break
					}
				}
				continue
			}
			cfg := loadExample(t, b)
			if cfg == nil {
				continue
			}
			counts[file]++
			if file == "configuration.md" && len(cfg.Postgres) > 0 && len(cfg.Redis) > 0 && len(cfg.TCP) > 0 &&
				len(cfg.HTTP) > 0 && len(cfg.TLS) > 0 && len(cfg.Policy.Rules) > 0 && len(cfg.Policy.RateLimits) > 0 {
				full = true
			}
		}
	}
	for file, min := range minConfigBlocks {
		if counts[file] < min {
			t.Errorf("%s: %d config examples load, want at least %d", file, counts[file], min)
		}
	}
	if !full {
		t.Error("configuration.md has no complete example with every section (tls, postgres, redis, tcp, http, policy rules and rate limits)")
	}
}

// loadExample writes one config example to a temp dir with the files it
// names, loads it, and checks that its secrets do not print.
func loadExample(t *testing.T, b block) *config.Config {
	t.Helper()
	var tree any
	if err := yaml.Unmarshal([]byte(b.body), &tree); err != nil {
		t.Errorf("%s: not YAML: %v", b, err)
		return nil
	}
	dir := t.TempDir()
	for _, f := range namedFiles(tree) {
		if filepath.IsAbs(f.path) {
			t.Errorf("%s: %s names the absolute path %s; config examples use paths relative to the config file", b, f.key, f.path)
			return nil
		}
		p := filepath.Join(dir, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		content := ""
		if f.key == "password_file" || f.key == "upstream_password_file" || f.key == "auth_password_file" {
			content = fileSecret + "\n"
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "outrigger.yaml")
	if err := os.WriteFile(path, []byte(b.body), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Source{Path: path, Environ: exampleEnv})
	if err != nil {
		var lines []string
		for _, e := range config.Flatten(err) {
			lines = append(lines, "  "+e.Error())
		}
		t.Errorf("%s: config example does not load:\n%s", b, strings.Join(lines, "\n"))
		return nil
	}
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{envSecret, fileSecret} {
		if bytes.Contains(js, []byte(s)) {
			t.Errorf("%s: a secret shows in the config as /config would print it", b)
		}
	}
	return cfg
}

type namedFile struct{ key, path string }

// namedFiles finds the file paths a config names: TLS certificates, keys and
// CA bundles, and password files (upstream ones included).
func namedFiles(v any) []namedFile {
	var out []namedFile
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if s, ok := x.(string); ok && s != "" {
				switch k {
				case "cert", "key", "ca", "password_file", "upstream_password_file", "auth_password_file":
					out = append(out, namedFile{k, s})
				}
				continue
			}
			out = append(out, namedFiles(x)...)
		}
	case []any:
		for _, x := range v {
			out = append(out, namedFiles(x)...)
		}
	}
	return out
}

// Shared shapes: types that several sections embed, documented once.
var shapes = map[reflect.Type]string{
	reflect.TypeFor[config.Listener](): "<listener>",
	reflect.TypeFor[config.Upstream](): "<upstream>",
}

type schemaKey struct {
	typ    string
	def    string
	hasDef bool
}

// schema is the config tree as docs/configuration.md documents it.
type schema struct {
	keys map[string]schemaKey
	uses map[string][]string // shape -> where it occurs ("<upstream>" -> "tcp[].upstream", ...)
}

func configSchema(t *testing.T) *schema {
	s := &schema{keys: map[string]schemaKey{}, uses: map[string][]string{}}
	s.walk(t, reflect.TypeFor[config.Config](), "")
	for _, u := range s.uses {
		sort.Strings(u)
	}
	return s
}

func (s *schema) use(shape, at string) {
	if !slices.Contains(s.uses[shape], at) {
		s.uses[shape] = append(s.uses[shape], at)
	}
}

func (s *schema) walk(t *testing.T, st reflect.Type, prefix string) {
	for i := 0; i < st.NumField(); i++ {
		f := st.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("koanf"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if opts == "squash" {
			if sh, ok := shapes[ft]; ok {
				s.use(sh, strings.TrimSuffix(prefix, "."))
				s.walk(t, ft, sh+".")
			} else {
				s.walk(t, ft, prefix)
			}
			continue
		}
		path := prefix + name
		if sh, ok := shapes[ft]; ok {
			s.use(sh, path)
			s.walk(t, ft, sh+".")
			continue
		}
		switch {
		case ft == reflect.TypeFor[time.Duration]():
		case ft.Kind() == reflect.Struct:
			s.walk(t, ft, path+".")
			continue
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			s.walk(t, ft.Elem(), path+"[].")
			continue
		case ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct:
			s.walk(t, ft.Elem(), path+".<name>.")
			continue
		}
		def, hasDef := f.Tag.Lookup("default")
		typ := typeName(t, path, ft)
		if hasDef && ft.Kind() == reflect.Slice {
			checkListDefault(t, path, def)
		}
		s.keys[path] = schemaKey{typ: typ, def: def, hasDef: hasDef}
	}
}

// typeName is the word the type column uses for a Go type.
func typeName(t *testing.T, path string, ft reflect.Type) string {
	switch {
	case ft == reflect.TypeFor[time.Duration]():
		return "duration"
	case ft == reflect.TypeFor[config.Secret]():
		return "secret"
	case ft.Kind() == reflect.String:
		return "string"
	case ft.Kind() == reflect.Bool:
		return "bool"
	case ft.Kind() == reflect.Int:
		return "int"
	case ft.Kind() == reflect.Float64:
		return "float"
	case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.String:
		return "list of strings"
	}
	t.Fatalf("%s: no type word for %v; teach typeName and the docs", path, ft)
	return ""
}

// checkListDefault checks that a list-typed key's default tag is written
// "[a, b]": config.Load makes a list of that form only; any other tag would
// be read as one string.
func checkListDefault(t *testing.T, path, def string) {
	if !strings.HasPrefix(def, "[") || !strings.HasSuffix(def, "]") {
		t.Errorf("%s: list default %q is not written [a, b]", path, def)
		return
	}
	inner := strings.TrimSpace(def[1 : len(def)-1])
	if inner == "" {
		return // [] is an empty list
	}
	for _, item := range strings.Split(inner, ",") {
		if strings.TrimSpace(item) == "" {
			t.Errorf("%s: list default %q has an empty item", path, def)
		}
	}
}

// row is one table row with its cells.
type row struct {
	line  int
	cells []string
}

// splitCells splits a table line into its cells at every pipe that is not
// escaped as "\|", and turns the escaped ones back into pipes.
func splitCells(line string) []string {
	line = strings.TrimPrefix(line, "|")
	if strings.HasSuffix(line, "|") && !strings.HasSuffix(line, "\\|") {
		line = strings.TrimSuffix(line, "|")
	}
	var cells []string
	var cur strings.Builder
	for i := 0; i < len(line); i++ {
		switch {
		case line[i] == '\\' && i+1 < len(line) && line[i+1] == '|':
			cur.WriteByte('|')
			i++
		case line[i] == '|':
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
		default:
			cur.WriteByte(line[i])
		}
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

// tableRows returns the rows of every table in md whose header is header.
func tableRows(md string, header ...string) []row {
	var out []row
	in := false
	lines := strings.Split(md, "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(line, "|") {
			in = false
			continue
		}
		cells := splitCells(line)
		if !in {
			if strings.EqualFold(strings.Join(cells, "|"), strings.Join(header, "|")) {
				in = true
				i++ // the separator line
			}
			continue
		}
		out = append(out, row{line: i + 1, cells: cells})
	}
	return out
}

var codeRE = regexp.MustCompile("^`([^`]+)`$")

// TestConfigReference checks docs/configuration.md against the schema: every
// key has one row with its type and default, and no row names a key that
// does not exist.
func TestConfigReference(t *testing.T) {
	s := configSchema(t)
	if len(s.keys) < 80 {
		t.Fatalf("schema walk found %d keys; it is broken", len(s.keys))
	}
	md := read(t, "configuration.md")
	rows := tableRows(md, "key", "type", "default", "meaning")
	if len(rows) < len(s.keys) {
		t.Errorf("configuration.md: %d config table rows for %d keys", len(rows), len(s.keys))
	}
	seen := map[string]int{}
	for _, r := range rows {
		where := fmt.Sprintf("configuration.md:%d", r.line)
		if len(r.cells) != 4 {
			t.Errorf("%s: %d cells, want 4 (a pipe inside a cell?)", where, len(r.cells))
			continue
		}
		m := codeRE.FindStringSubmatch(r.cells[0])
		if m == nil {
			t.Errorf("%s: key cell %q is not one `key.path`", where, r.cells[0])
			continue
		}
		key, typ, def := m[1], r.cells[1], r.cells[2]
		if prev, dup := seen[key]; dup {
			t.Errorf("%s: %s is already documented at line %d", where, key, prev)
		}
		seen[key] = r.line
		if shape := shapeAt(s, key); shape != "" {
			// A row for the place a shared shape sits, e.g. tcp[].upstream.
			if want := strings.Trim(shape, "<>"); typ != want {
				t.Errorf("%s: %s: type %q, want %q", where, key, typ, want)
			}
			continue
		}
		k, ok := s.keys[key]
		if !ok {
			t.Errorf("%s: %s is not a config key", where, key)
			continue
		}
		if typ != k.typ {
			t.Errorf("%s: %s: type %q, want %q", where, key, typ, k.typ)
		}
		switch {
		case k.hasDef && def != "`"+k.def+"`":
			t.Errorf("%s: %s: default %s, want `%s` (the default tag)", where, key, def, k.def)
		case !k.hasDef && def != "required" && def != "none":
			t.Errorf("%s: %s has no default tag: the default cell must say required or none, not %s", where, key, def)
		}
	}
	var missing []string
	for key := range s.keys {
		if _, ok := seen[key]; !ok {
			missing = append(missing, key)
		}
	}
	sort.Strings(missing)
	for _, key := range missing {
		t.Errorf("configuration.md: no row for %s", key)
	}
	// Where each shared shape is used must be said: upstreams have a row
	// each, listener sections are named in the text.
	for _, at := range s.uses["<upstream>"] {
		if _, ok := seen[at]; !ok {
			t.Errorf("configuration.md: no row for %s (type upstream)", at)
		}
	}
	for _, at := range s.uses["<listener>"] {
		if !strings.Contains(md, "`"+at+"`") {
			t.Errorf("configuration.md: the listener section %s is not named", at)
		}
	}
}

// shapeAt returns the shape that sits at key ("<upstream>" for
// "tcp[].upstream"), or "".
func shapeAt(s *schema, key string) string {
	for shape, uses := range s.uses {
		if slices.Contains(uses, key) {
			return shape
		}
	}
	return ""
}

var (
	envRE  = regexp.MustCompile(`OUTRIGGER_[A-Z0-9_]*`)
	flagRE = regexp.MustCompile(`(?m)^\s+(?:-([a-z]), )?--([a-z][a-z0-9_.]*)`)
	// dottedFlagRE finds flags named by key path in the docs: --admin.listen.
	dottedFlagRE = regexp.MustCompile(`--([a-z][a-z0-9_]*\.[a-z0-9_.]*[a-z0-9_])`)
)

// TestEnvAndFlags checks that every OUTRIGGER_ variable the docs name is one
// that sets a real key (or OUTRIGGER_CONFIG), and that the flags the docs
// name are the command's flags and all of them are documented.
func TestEnvAndFlags(t *testing.T) {
	s := configSchema(t)
	for _, file := range docFiles(t) {
		for _, v := range envRE.FindAllString(read(t, file), -1) {
			if v == "OUTRIGGER_" || v == "OUTRIGGER_CONFIG" {
				continue
			}
			if !strings.Contains(v, "__") {
				t.Errorf("%s: %s has no double underscore, so it sets nothing", file, v)
				continue
			}
			key := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(v, config.EnvPrefix), "__", "."))
			if regexp.MustCompile(`\.[0-9]+\.`).MatchString(key) {
				// Documented as refused: prove it is.
				_, err := config.Load(config.Source{Data: []byte("admin: {listen: off}"), Environ: []string{v + "=x"}})
				if err == nil || !strings.Contains(err.Error(), "cannot set keys inside lists") {
					t.Errorf("%s: %s is documented as refused, but Load says %v", file, v, err)
				}
				continue
			}
			if parts := strings.SplitN(key, ".", 3); parts[0] == "tls" && len(parts) == 3 {
				key = "tls.<name>." + parts[2]
			}
			if _, ok := s.keys[key]; !ok || strings.Contains(key, "[]") || strings.HasPrefix(key, "<") {
				t.Errorf("%s: %s would set %s, which is not a key an environment variable can set", file, v, key)
			}
		}
	}

	var help bytes.Buffer
	if code := cli.Main(context.Background(), []string{"help"}, cli.Options{Stdout: &help, Stderr: &help, Environ: []string{}}); code != 0 {
		t.Fatalf("outrigger help: exit %d", code)
	}
	flags := map[string]bool{}
	conf := read(t, "configuration.md")
	for _, m := range flagRE.FindAllStringSubmatch(help.String(), -1) {
		flags[m[2]] = true
		if !regexp.MustCompile("`--" + regexp.QuoteMeta(m[2]) + "[ `=]").MatchString(conf) {
			t.Errorf("configuration.md: flag --%s is not documented", m[2])
		}
		if m[1] != "" && !regexp.MustCompile("`-"+m[1]+"[ `]").MatchString(conf) {
			t.Errorf("configuration.md: flag -%s is not documented", m[1])
		}
	}
	if len(flags) < 5 {
		t.Fatalf("found %d flags in `outrigger help`:\n%s", len(flags), &help)
	}
	for _, file := range docFiles(t) {
		for _, m := range dottedFlagRE.FindAllStringSubmatch(read(t, file), -1) {
			if !flags[m[1]] {
				t.Errorf("%s: --%s is not a flag of outrigger", file, m[1])
			}
		}
	}
}

// TestPostgresListenerRuns checks that a postgres listener config passes
// `outrigger check` and runs with `outrigger run`, that no doc still says
// the listener is not built, and that the login errors the docs quote are
// the ones a client gets from Outrigger itself (no Postgres server is
// needed for these: the login fails before Outrigger connects upstream).
func TestPostgresListenerRuns(t *testing.T) {
	for _, file := range docFiles(t) {
		for _, stale := range []string{"this build has no postgres listener", "no frontend for it yet"} {
			if strings.Contains(read(t, file), stale) {
				t.Errorf("%s still says %q, but this build has a postgres listener", file, stale)
			}
		}
	}

	// An upstream address where nothing listens: a port that was just free.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	dir := t.TempDir()
	ca := testenv.NewCA(t, "docs-test-ca")
	cert, key := ca.Issue(t, testenv.LeafOptions{}).WriteFiles(dir)
	body := fmt.Sprintf(`admin: {listen: "off"}
tls:
  edge: {cert: %q, key: %q}
postgres:
  - name: appdb
    listen: "127.0.0.1:0"
    upstream: {address: %q}
    auth:
      method: scram-sha-256
      users: [{name: app, password: app-password}]
  - name: securedb
    listen: "127.0.0.1:0"
    tls: edge
    upstream: {address: %q}
    auth: {method: trust}
`, cert, key, dead, dead)
	path := filepath.Join(dir, "outrigger.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if code := cli.Main(context.Background(), []string{"check", "-c", path}, cli.Options{Stdout: &out, Stderr: &out, Environ: []string{}}); code != 0 ||
		!strings.Contains(out.String(), "ok: 2 listener(s): postgres appdb 127.0.0.1:0, postgres securedb 127.0.0.1:0") {
		t.Fatalf("outrigger check with postgres listeners: exit %d, output:\n%s", code, &out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type addrs struct{ app, secure net.Addr }
	started := make(chan addrs, 1)
	exited := make(chan int, 1)
	var runOut syncBuffer
	go func() {
		exited <- cli.Main(ctx, []string{"run", "-c", path}, cli.Options{
			Stdout: &runOut, Stderr: &runOut, Environ: []string{},
			Started: func(s *sidecar.Server) { started <- addrs{s.ListenerAddr("appdb"), s.ListenerAddr("securedb")} },
		})
	}()
	var a addrs
	select {
	case a = <-started:
	case code := <-exited:
		t.Fatalf("outrigger run with postgres listeners exited %d before it started:\n%s", code, runOut.String())
	}
	if a.app == nil || a.secure == nil {
		t.Fatal("a postgres listener has no address")
	}

	conf, ops := read(t, "configuration.md"), read(t, "operations.md")
	quoted := func(reply, doc string) {
		t.Helper()
		if !strings.Contains(conf, doc) && !strings.Contains(ops, doc) {
			t.Errorf("neither configuration.md nor operations.md quotes the error %q as %q", reply, doc)
		}
	}

	// Without a TLS profile an SSLRequest is answered N.
	c, err := net.DialTimeout("tcp", a.app.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f})
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'N' {
		t.Errorf("SSLRequest to a listener without tls: got %q, %v; want N", b[:], err)
	}
	c.Close()

	login := func(addr net.Addr, user, password string) error {
		t.Helper()
		host, port, _ := net.SplitHostPort(addr.String())
		cfg, err := pgconn.ParseConfig(fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=app sslmode=disable connect_timeout=10", host, port, user, password))
		if err != nil {
			t.Fatal(err)
		}
		pc, err := pgconn.ConnectConfig(ctx, cfg)
		if err == nil {
			pc.Close(ctx)
			t.Fatalf("login as %s to %s succeeded", user, addr)
		}
		return err
	}
	// pgErr checks the ErrorResponse a failed login got, and that the docs
	// quote it as doc.
	pgErr := func(what string, err error, code, message, doc string) {
		t.Helper()
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.Severity != "FATAL" || pe.Code != code || pe.Message != message {
			t.Errorf("%s: got %v, want FATAL %s %q", what, err, code, message)
			return
		}
		quoted(message, doc)
	}
	pgErr("a wrong password", login(a.app, "app", "wrong"), "28P01", `password authentication failed for user "app"`,
		`FATAL 28P01 password authentication failed for user "NAME"`)
	login(a.app, "nobody", "wrong") // refused; how, the docs say per method
	const needTLS = "this listener requires TLS (connect with sslmode=require)"
	pgErr("a plaintext login to a listener with tls", login(a.secure, "app", "unused"), "28000", needTLS, "FATAL 28000 "+needTLS)

	cancel()
	select {
	case code := <-exited:
		if code != 0 {
			t.Errorf("outrigger run with postgres listeners: exit %d, output:\n%s", code, runOut.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("outrigger run did not exit after its context ended")
	}
}

// TestRedisListenerRuns checks that a redis listener config passes
// `outrigger check` and runs, and that the replies the docs quote are the
// ones a client gets from Outrigger itself (no Redis server is needed for
// these): a refused command, an upstream that cannot be reached, a command
// over max_command_bytes. It also checks the refuse_commands default.
func TestRedisListenerRuns(t *testing.T) {
	// An upstream address where nothing listens: a port that was just free.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	body := fmt.Sprintf("admin: {listen: \"off\"}\nredis:\n  - name: cache\n    listen: \"127.0.0.1:0\"\n    upstream: {address: %q}\n    max_command_bytes: 1024\n", dead)
	path := filepath.Join(t.TempDir(), "outrigger.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}

	// The default refuse list is the tag's list, item by item.
	cfg, err := config.Load(config.Source{Path: path, Environ: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	f, _ := reflect.TypeFor[config.Redis]().FieldByName("RefuseCommands")
	var want []string
	for _, item := range strings.Split(strings.Trim(f.Tag.Get("default"), "[]"), ",") {
		want = append(want, strings.TrimSpace(item))
	}
	if !slices.Equal(cfg.Redis[0].RefuseCommands, want) {
		t.Errorf("refuse_commands loads as %q, want the default tag's list %q", cfg.Redis[0].RefuseCommands, want)
	}

	var out bytes.Buffer
	if code := cli.Main(context.Background(), []string{"check", "-c", path}, cli.Options{Stdout: &out, Stderr: &out, Environ: []string{}}); code != 0 ||
		!strings.Contains(out.String(), "ok: 1 listener(s): redis cache") {
		t.Fatalf("outrigger check with a redis listener: exit %d, output:\n%s", code, &out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	started := make(chan net.Addr, 1)
	exited := make(chan int, 1)
	var runOut syncBuffer
	go func() {
		exited <- cli.Main(ctx, []string{"run", "-c", path}, cli.Options{
			Stdout: &runOut, Stderr: &runOut, Environ: []string{},
			Started: func(s *sidecar.Server) { started <- s.ListenerAddr("cache") },
		})
	}()
	var addr net.Addr
	select {
	case addr = <-started:
	case code := <-exited:
		t.Fatalf("outrigger run with a redis listener exited %d before it started:\n%s", code, runOut.String())
	}
	if addr == nil {
		t.Fatal("the redis listener has no address")
	}

	ops := read(t, "operations.md")
	quoted := func(reply, doc string) {
		t.Helper()
		if !strings.Contains(ops, doc) {
			t.Errorf("operations.md does not quote the reply %q as %q", reply, doc)
		}
	}

	c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	c.Write([]byte("*1\r\n$4\r\nSYNC\r\n*1\r\n$4\r\nPING\r\n*2\r\n$6\r\nCLIENT\r\n$7\r\nGETNAME\r\n"))
	r := bufio.NewReader(c)
	line := func() string {
		t.Helper()
		s, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading a reply: %v (got %q)", err, s)
		}
		return strings.TrimSuffix(s, "\r\n")
	}
	if got := line(); got != "-NOPERM Outrigger refuses the 'sync' command (redis[].refuse_commands)" {
		t.Errorf("SYNC: got %q", got)
	} else {
		quoted(got, "NOPERM Outrigger refuses the '<name>' command (redis[].refuse_commands)")
	}
	if got := line(); !strings.HasPrefix(got, "-ERR upstream unavailable: ") || !strings.Contains(got, dead) {
		t.Errorf("PING with no upstream: got %q", got)
	} else {
		quoted(got, "ERR upstream unavailable: ")
	}
	if got := line(); got != "$-1" {
		t.Errorf("CLIENT GETNAME (answered by Outrigger): got %q, want a null reply", got)
	}
	c.Close()

	// A command over max_command_bytes: 1024 bytes of a SET whose value
	// never ends. Outrigger reads them all, answers and closes.
	c, err = net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	big := []byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4000\r\n")
	big = append(big, bytes.Repeat([]byte("x"), 1024-len(big))...)
	c.Write(big)
	rest, err := io.ReadAll(c)
	want1 := "-ERR Protocol error: command larger than 1024 bytes\r\n"
	if string(rest) != want1 {
		t.Errorf("a command over max_command_bytes: got %q (%v), want %q and the connection closed", rest, err, want1)
	} else {
		quoted(want1, "ERR Protocol error: command larger than N bytes")
	}
	c.Close()

	cancel()
	select {
	case code := <-exited:
		if code != 0 {
			t.Errorf("outrigger run with a redis listener: exit %d, output:\n%s", code, runOut.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("outrigger run did not exit after its context ended")
	}
}

// syncBuffer is a bytes.Buffer that a running outrigger may write to while
// the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// metricInfo is one registered metric family.
type metricInfo struct {
	typ    string // counter | gauge | histogram | summary; "" when unknown
	labels []string
}

var (
	fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)
	labelsRE = regexp.MustCompile(`variableLabels: \{([^}]*)\}`)
)

// describe returns the metric families a collector describes.
func describe(c prometheus.Collector) map[string]metricInfo {
	ch := make(chan *prometheus.Desc)
	go func() {
		c.Describe(ch)
		close(ch)
	}()
	out := map[string]metricInfo{}
	for d := range ch {
		s := d.String()
		m := fqNameRE.FindStringSubmatch(s)
		if m == nil {
			continue
		}
		var labels []string
		if l := labelsRE.FindStringSubmatch(s); l != nil && l[1] != "" {
			labels = strings.Split(l[1], ",")
		}
		out[m[1]] = metricInfo{labels: labels}
	}
	return out
}

// registered returns every metric family metrics.New registers (vectors
// included, whether or not they have children yet), typed from the Go type
// of the Metrics field that holds each.
func registered(t *testing.T) (map[string]metricInfo, *metrics.Metrics) {
	m := metrics.New(metrics.BuildInfo{})
	all := describe(m.Registry)
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		c, ok := v.Field(i).Interface().(prometheus.Collector)
		if !ok || v.Type().Field(i).Name == "Registry" {
			continue
		}
		var typ string
		switch c.(type) {
		// Gauge before Counter: a Gauge also has Inc and Add.
		case *prometheus.GaugeVec, prometheus.Gauge:
			typ = "gauge"
		case *prometheus.CounterVec, prometheus.Counter:
			typ = "counter"
		case *prometheus.HistogramVec, prometheus.Histogram:
			typ = "histogram"
		case *prometheus.SummaryVec, prometheus.Summary:
			typ = "summary"
		}
		for name := range describe(c) {
			mi := all[name]
			mi.typ = typ
			all[name] = mi
		}
	}
	return all, m
}

var metricNameRE = regexp.MustCompile(`\b(?:outrigger|go|process)_[a-z0-9_]*[a-z0-9]`)

// TestMetricsCatalog checks docs/metrics.md against the registry: every
// outrigger_ family has a row with its type and labels, and every metric
// name the page mentions exists.
func TestMetricsCatalog(t *testing.T) {
	reg, m := registered(t)
	ours := 0
	for name := range reg {
		if strings.HasPrefix(name, metrics.Namespace+"_") {
			ours++
		}
	}
	if ours < 20 {
		t.Fatalf("found %d outrigger_ metrics in the registry; the lookup is broken", ours)
	}
	md := read(t, "metrics.md")
	rows := tableRows(md, "metric", "type", "labels", "meaning")
	seen := map[string]bool{}
	for _, r := range rows {
		where := fmt.Sprintf("metrics.md:%d", r.line)
		if len(r.cells) != 4 {
			t.Errorf("%s: %d cells, want 4", where, len(r.cells))
			continue
		}
		mm := codeRE.FindStringSubmatch(r.cells[0])
		if mm == nil {
			t.Errorf("%s: metric cell %q is not one `name`", where, r.cells[0])
			continue
		}
		name := mm[1]
		info, ok := reg[name]
		if !ok {
			t.Errorf("%s: %s is not registered by metrics.New", where, name)
			continue
		}
		seen[name] = true
		if info.typ != "" && r.cells[1] != info.typ {
			t.Errorf("%s: %s: type %q, want %q", where, name, r.cells[1], info.typ)
		}
		var labels []string
		if r.cells[2] != "none" {
			for _, l := range strings.Split(r.cells[2], ",") {
				lm := codeRE.FindStringSubmatch(strings.TrimSpace(l))
				if lm == nil {
					t.Errorf("%s: %s: label %q is not in backticks", where, name, l)
					continue
				}
				labels = append(labels, lm[1])
			}
		}
		want := slices.Clone(info.labels)
		sort.Strings(labels)
		sort.Strings(want)
		if !slices.Equal(labels, want) {
			t.Errorf("%s: %s: labels %v, want %v", where, name, labels, want)
		}
	}
	for name := range reg {
		if strings.HasPrefix(name, metrics.Namespace+"_") && !seen[name] {
			t.Errorf("metrics.md: no row for %s", name)
		}
	}

	// Every name the page mentions, in prose or PromQL, must exist: a
	// registered family, a histogram's _bucket/_sum/_count series, a family
	// of the Go and process collectors, or a label name.
	known := map[string]bool{}
	for name, info := range reg {
		known[name] = true
		for _, l := range info.labels {
			known[l] = true
		}
		if info.typ == "histogram" || info.typ == "summary" {
			known[name+"_bucket"], known[name+"_sum"], known[name+"_count"] = true, true, true
		}
	}
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		known[mf.GetName()] = true
	}
	for _, name := range metricNameRE.FindAllString(md, -1) {
		if !known[name] {
			t.Errorf("metrics.md mentions %s, which this build does not export", name)
		}
	}

	// The alert rules shipped in deploy/prometheus are quoted on the page.
	var alerts struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal([]byte(read(t, "../deploy/prometheus/alerts.yml")), &alerts); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, g := range alerts.Groups {
		for _, r := range g.Rules {
			n++
			if !strings.Contains(md, r.Alert) || !strings.Contains(md, strings.TrimSpace(r.Expr)) {
				t.Errorf("metrics.md does not quote alert %s with its expression %q", r.Alert, r.Expr)
			}
		}
	}
	if n == 0 {
		t.Error("no alert rules found in deploy/prometheus/alerts.yml")
	}
}
