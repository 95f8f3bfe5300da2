package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/providers/rawbytes"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/pflag"
)

// EnvPrefix starts every environment variable that sets a config key. A double
// underscore separates key levels: OUTRIGGER_ADMIN__LISTEN sets admin.listen and
// OUTRIGGER_SHUTDOWN__DRAIN_TIMEOUT sets shutdown.drain_timeout. Variables
// without a double underscore (OUTRIGGER_CONFIG, say) are not config keys.
const EnvPrefix = "OUTRIGGER_"

// Source says where Load reads from. Later sources override earlier ones:
// file, then environment, then flags.
type Source struct {
	// Path is the YAML file; "" loads no file.
	Path string
	// Data is YAML used instead of reading Path (the embedded demo config);
	// relative paths in it resolve against the working directory.
	Data []byte
	// Environ lists environment variables as KEY=VALUE; nil means os.Environ.
	Environ []string
	// Flags holds flags named by key path (--admin.listen); only flags the
	// user set are applied.
	Flags *pflag.FlagSet
}

// Load reads, decodes and validates a config. The error, if any, joins every
// problem found (see Errors), each naming its key path.
func Load(src Source) (*Config, error) {
	ko := koanf.New(".")
	data := src.Data
	if data == nil && src.Path != "" {
		b, err := os.ReadFile(src.Path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		data = b
	}
	if len(data) > 0 {
		if err := ko.Load(rawbytes.Provider(data), yaml.Parser()); err != nil {
			return nil, fmt.Errorf("config: %s: %w", displayPath(src.Path), err)
		}
	}
	environ := src.Environ
	if environ == nil {
		environ = os.Environ()
	}
	var envErrs []error
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if key, _ := envKey(name, ""); key != "" && listIndex.MatchString(key) {
			envErrs = append(envErrs, fmt.Errorf("%s: environment variables cannot set keys inside lists (%s); set them in the file", name, key))
		}
	}
	if len(envErrs) > 0 {
		return nil, errors.Join(envErrs...)
	}
	if err := ko.Load(env.Provider(".", env.Opt{
		Prefix:        EnvPrefix,
		EnvironFunc:   func() []string { return environ },
		TransformFunc: envKey,
	}), nil); err != nil {
		return nil, fmt.Errorf("config: environment: %w", err)
	}
	if src.Flags != nil {
		if err := ko.Load(posflag.ProviderWithFlag(src.Flags, ".", nil, func(f *pflag.Flag) (string, any) {
			if !f.Changed || !strings.Contains(f.Name, ".") {
				return "", nil
			}
			return f.Name, posflag.FlagVal(src.Flags, f)
		}), nil); err != nil {
			return nil, fmt.Errorf("config: flags: %w", err)
		}
	}

	raw := ko.Raw()
	applyDefaults(raw, reflect.TypeFor[Config]())

	cfg := &Config{Path: src.Path}
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		DecodeHook:       mapstructure.ComposeDecodeHookFunc(durationNeedsUnit, mapstructure.StringToTimeDurationHookFunc()),
		WeaklyTypedInput: true,
		Result:           cfg,
		TagName:          "koanf",
	})
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, k := range unknownKeys(raw, reflect.TypeFor[Config](), "") {
		errs = append(errs, fmt.Errorf("%s: unknown key", k))
	}
	if err := dec.Decode(raw); err != nil {
		// The tree is only partly decoded: validating it would report
		// follow-on noise, so stop at what is certain.
		return nil, errors.Join(append(decodeErrors(err), errs...)...)
	}
	// Unknown keys do not stop validation: every problem is listed at once.
	base := "."
	if src.Path != "" && src.Data == nil {
		base = filepath.Dir(src.Path)
	}
	errs = append(errs, cfg.resolve(base, environ)...)
	errs = append(errs, Flatten(cfg.Validate())...)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

func displayPath(p string) string {
	if p == "" {
		return "config"
	}
	return p
}

// envKey maps OUTRIGGER_SHUTDOWN__DRAIN_TIMEOUT to shutdown.drain_timeout.
func envKey(k, v string) (string, any) {
	k = strings.TrimPrefix(k, EnvPrefix)
	if !strings.Contains(k, "__") {
		return "", nil
	}
	return strings.ToLower(strings.ReplaceAll(k, "__", ".")), v
}

// Flatten splits an errors.Join tree into its leaves.
func Flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// durationNeedsUnit refuses a bare number for a duration: `5` would be 5 ns,
// never what was meant. 0 is allowed.
func durationNeedsUnit(from, to reflect.Type, data any) (any, error) {
	if to != reflect.TypeFor[time.Duration]() {
		return data, nil
	}
	switch from.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		if reflect.ValueOf(data).IsZero() {
			return "0s", nil
		}
		return nil, fmt.Errorf("%v: a duration needs a unit, such as 5s or 250ms", data)
	}
	return data, nil
}

// defaultValue turns a default tag into a raw value: "[a, b]" is a list.
func defaultValue(tag string) any {
	inner, ok := strings.CutPrefix(tag, "[")
	if !ok {
		return tag
	}
	inner = strings.TrimSuffix(inner, "]")
	out := []any{}
	for _, v := range strings.Split(inner, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// decodeErrors renders mapstructure's errors as "key.path: problem".
func decodeErrors(err error) []error {
	var out []error
	var walk func(error)
	walk = func(err error) {
		var de *mapstructure.DecodeError
		switch {
		case errors.As(err, &de) && de.Unwrap() != nil && len(Flatten(de.Unwrap())) == 1:
			out = append(out, fmt.Errorf("%s: %w", de.Name(), de.Unwrap()))
		default:
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				for _, e := range j.Unwrap() {
					walk(e)
				}
				return
			}
			if u := errors.Unwrap(err); u != nil {
				walk(u)
				return
			}
			out = append(out, err)
		}
	}
	walk(err)
	return out
}

// unknownKeys lists the key paths in raw that no field of t takes.
func unknownKeys(raw map[string]any, t reflect.Type, prefix string) []string {
	fields := map[string]reflect.Type{}
	var collect func(reflect.Type)
	collect = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("koanf"), ",")
			switch {
			case name == "-":
			case opts == "squash":
				collect(f.Type)
			default:
				fields[name] = f.Type
			}
		}
	}
	collect(t)
	var out []string
	for _, k := range sortedKeys(raw) {
		ft, ok := fields[k]
		if !ok {
			out = append(out, prefix+k)
			continue
		}
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch v := raw[k].(type) {
		case map[string]any:
			if ft.Kind() == reflect.Struct && ft.PkgPath() != "time" {
				out = append(out, unknownKeys(v, ft, prefix+k+".")...)
			} else if ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct {
				for _, mk := range sortedKeys(v) {
					if m, ok := v[mk].(map[string]any); ok {
						out = append(out, unknownKeys(m, ft.Elem(), prefix+k+"."+mk+".")...)
					}
				}
			}
		case []any:
			if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
				for i, it := range v {
					if m, ok := it.(map[string]any); ok {
						out = append(out, unknownKeys(m, ft.Elem(), fmt.Sprintf("%s%s[%d].", prefix, k, i))...)
					}
				}
			}
		}
	}
	return out
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// applyDefaults writes each field's `default` tag into raw wherever its key is
// absent, walking into nested sections, list items and map values.
func applyDefaults(raw map[string]any, t reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, opts, _ := strings.Cut(f.Tag.Get("koanf"), ",")
		if name == "-" {
			continue
		}
		if opts == "squash" {
			applyDefaults(raw, f.Type)
			continue
		}
		if d, ok := f.Tag.Lookup("default"); ok {
			if _, present := raw[name]; !present {
				raw[name] = defaultValue(d)
			}
			continue
		}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
			if m, ok := raw[name].(map[string]any); ok && ft.Kind() == reflect.Struct {
				applyDefaults(m, ft)
			}
			continue
		}
		switch ft.Kind() {
		case reflect.Struct:
			if ft.PkgPath() == "time" {
				continue
			}
			m, ok := raw[name].(map[string]any)
			if !ok {
				if _, present := raw[name]; present {
					continue // wrong type: the decoder reports it
				}
				m = map[string]any{}
				raw[name] = m
			}
			applyDefaults(m, ft)
		case reflect.Slice:
			if ft.Elem().Kind() != reflect.Struct {
				continue
			}
			items, _ := raw[name].([]any)
			for _, it := range items {
				if m, ok := it.(map[string]any); ok {
					applyDefaults(m, ft.Elem())
				}
			}
		case reflect.Map:
			if ft.Elem().Kind() != reflect.Struct {
				continue
			}
			items, _ := raw[name].(map[string]any)
			for _, it := range items {
				if m, ok := it.(map[string]any); ok {
					applyDefaults(m, ft.Elem())
				}
			}
		}
	}
}

var listIndex = regexp.MustCompile(`(^|\.)[0-9]+(\.|$)`)

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandSecret replaces ${NAME} references with environment values.
func expandSecret(s string, lookup map[string]string) (string, error) {
	var missing []string
	out := envRef.ReplaceAllStringFunc(s, func(m string) string {
		name := envRef.FindStringSubmatch(m)[1]
		v, ok := lookup[name]
		if !ok {
			missing = append(missing, name)
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("environment variable %s is not set", strings.Join(missing, ", "))
	}
	return out, nil
}

// resolve reads password files, expands ${ENV} references in secrets and makes
// relative file paths relative to the config file's folder.
func (c *Config) resolve(base string, environ []string) []error {
	lookup := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			lookup[k] = v
		}
	}
	var errs []error
	rel := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
	if o := c.AccessLog.Output; o != "stderr" && o != "stdout" {
		rel(&c.AccessLog.Output)
	}
	for name, p := range c.TLS {
		rel(&p.Cert)
		rel(&p.Key)
		rel(&p.CA)
		c.TLS[name] = p
	}
	upstream := func(u *Upstream) {
		rel(&u.TLS.CA)
		rel(&u.TLS.Cert)
		rel(&u.TLS.Key)
	}
	// secret resolves a Secret at key: from its file (key_file) when that
	// is set, else by expanding ${ENV} references.
	secret := func(key string, v *Secret, file *string) {
		if file != nil && *file != "" {
			rel(file)
			b, err := os.ReadFile(*file)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s_file: %w", key, err))
				return
			}
			if *v != "" {
				errs = append(errs, fmt.Errorf("%s: set %s or %s_file, not both", key, lastPart(key), lastPart(key)))
			}
			*v = Secret(strings.TrimSpace(string(b)))
			return
		}
		x, err := expandSecret(string(*v), lookup)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", key, err))
		}
		*v = Secret(x)
	}
	for i := range c.Postgres {
		pg := &c.Postgres[i]
		upstream(&pg.Upstream)
		secret(fmt.Sprintf("postgres[%d].auth.auth_password", i), &pg.Auth.AuthPassword, &pg.Auth.AuthPasswordFile)
		for j := range pg.Auth.Users {
			u := &pg.Auth.Users[j]
			key := fmt.Sprintf("postgres[%d].auth.users[%d]", i, j)
			secret(key+".password", &u.Password, &u.PasswordFile)
			secret(key+".upstream_password", &u.UpstreamPassword, &u.UpstreamPasswordFile)
		}
	}
	for i := range c.Redis {
		r := &c.Redis[i]
		upstream(&r.Upstream)
		secret(fmt.Sprintf("redis[%d].auth.upstream_password", i), &r.Auth.UpstreamPassword, nil)
		for j := range r.Auth.Users {
			u := &r.Auth.Users[j]
			key := fmt.Sprintf("redis[%d].auth.users[%d]", i, j)
			secret(key+".password", &u.Password, &u.PasswordFile)
			secret(key+".upstream_password", &u.UpstreamPassword, &u.UpstreamPasswordFile)
		}
	}
	for i := range c.TCP {
		upstream(&c.TCP[i].Upstream)
	}
	for i := range c.HTTP {
		for j := range c.HTTP[i].Routes {
			upstream(&c.HTTP[i].Routes[j].Upstream)
		}
	}
	return errs
}

func lastPart(key string) string { return key[strings.LastIndex(key, ".")+1:] }

func keyPath(section string, i int) string { return fmt.Sprintf("%s[%d]", section, i) }
