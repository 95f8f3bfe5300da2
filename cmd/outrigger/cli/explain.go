package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/pg/classify"
	"github.com/outrigger/outrigger/policy"
	"github.com/outrigger/outrigger/redis"
)

const explainUsage = `Usage:
  outrigger policy explain -c FILE [--principal P] [--user U] [--database D]
                           [--listener L] [--source ADDR] (--sql "..." | --redis "SET k v")

Loads the config, compiles its policy section and prints the decision the
policy makes for one request of the session described by the flags: the
rule that governs the session, the action, the rate limit, the message, and
what the request was seen as (the statement kinds, tables and functions the
SQL classifier finds; the Redis command, its ACL categories and its keys).
--redis is split like a redis-cli command line ("..." and '...' quote).
Rate limits start with full buckets here, so explain is never rate limited.

Exit status: 0 allowed (audit included), 1 refused, 2 usage or config error.

Flags:
`

// policyCmd is `outrigger policy SUBCOMMAND`; explain is the only one.
func policyCmd(args []string, opts Options) int {
	if len(args) == 0 || args[0] != "explain" {
		fmt.Fprintf(opts.Stderr, "outrigger: policy: want a subcommand: explain\n\n%s", explainUsage)
		return 2
	}
	return explain(args[1:], opts)
}

// explain is `outrigger policy explain`.
func explain(args []string, opts Options) int {
	fs := pflag.NewFlagSet("outrigger policy explain", pflag.ContinueOnError)
	fs.SetOutput(opts.Stderr)
	fs.Usage = func() {
		fmt.Fprint(opts.Stderr, explainUsage)
		fs.PrintDefaults()
	}
	path := fs.StringP("config", "c", "", "config file (YAML); OUTRIGGER_CONFIG also works")
	var p policy.Principal
	fs.StringVar(&p.Identity, "principal", "", "the mTLS identity (SPIFFE ID or CN); none: a client without a certificate")
	fs.StringVar(&p.User, "user", "", `the authenticated user (Redis: "default" unless given)`)
	fs.StringVar(&p.Database, "database", "", "the Postgres database")
	fs.StringVar(&p.Listener, "listener", "", "the listener's name")
	source := fs.String("source", "", "the client's IP address; none: a Unix socket client")
	sql := fs.String("sql", "", "a Postgres statement string (all its statements are checked as one)")
	redisLine := fs.String("redis", "", `a Redis command line, e.g. "SET k v"`)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(opts.Stderr, "outrigger: %v\n", err)
		return 2
	}
	usageErr := func(format string, a ...any) int {
		fmt.Fprintf(opts.Stderr, "outrigger: policy explain: "+format+"\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q", fs.Arg(0))
	}
	if (*sql == "") == (*redisLine == "") {
		return usageErr("give one of --sql and --redis")
	}
	if *path == "" {
		*path = lookupEnv(opts.Environ, "OUTRIGGER_CONFIG")
	}
	if *path == "" {
		return usageErr("no config: pass -c FILE (or set OUTRIGGER_CONFIG)")
	}
	if *source != "" {
		a, err := netip.ParseAddr(*source)
		if err != nil {
			return usageErr("--source: %v", err)
		}
		p.Source = a
	}
	var redisArgs [][]byte
	if *redisLine != "" {
		parts, err := redis.SplitArgs([]byte(*redisLine))
		if err != nil {
			return usageErr("--redis: %v", err)
		}
		if len(parts) == 0 {
			return usageErr("--redis: no command")
		}
		redisArgs = parts
		if p.User == "" {
			p.User = "default" // as Redis names a client before AUTH
		}
	}

	cfg, err := config.Load(config.Source{Path: *path, Environ: opts.Environ})
	if err != nil {
		fmt.Fprintf(opts.Stderr, "outrigger: %s: invalid config:\n", *path)
		for _, e := range config.Flatten(err) {
			fmt.Fprintf(opts.Stderr, "  %v\n", e)
		}
		return 2
	}
	eng, err := policy.Compile(cfg.Policy)
	if err != nil {
		fmt.Fprintf(opts.Stderr, "outrigger: %s: policy:\n", *path)
		for _, e := range config.Flatten(err) {
			fmt.Fprintf(opts.Stderr, "  %v\n", e)
		}
		return 2
	}
	if p.Listener != "" && !hasListener(cfg, p.Listener) {
		fmt.Fprintf(opts.Stderr, "outrigger: policy explain: note: the config has no listener named %q\n", p.Listener)
	}

	w := opts.Stdout
	sess := eng.Session(p)
	printPrincipal(w, p)
	fmt.Fprintf(w, "session rule: %s\n", sess.RuleName())
	if !eng.Enforces() {
		fmt.Fprintln(w, "policy: no rules, no rate limits, default allow: nothing is checked")
	}
	ctx := context.Background()
	var d policy.Decision
	if *sql != "" {
		res := classify.Classify(*sql)
		printSQL(w, res)
		d = sess.CheckPostgres(ctx, res)
	} else {
		cmd, err := redis.PolicyCommand(redisArgs)
		if err != nil {
			return usageErr("--redis: %v", err)
		}
		printRedis(w, cmd, redis.Lookup(redisArgs) != nil)
		d = sess.CheckRedis(ctx, cmd)
	}
	printDecision(w, d, *sql != "")
	if d.Action != policy.Allow {
		return 1
	}
	return 0
}

func hasListener(cfg *config.Config, name string) bool {
	for _, l := range cfg.Listeners() {
		if l.Name == name {
			return true
		}
	}
	return false
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func printPrincipal(w io.Writer, p policy.Principal) {
	src := "(none)"
	if p.Source.IsValid() {
		src = p.Source.String()
	}
	fmt.Fprintf(w, "principal: %s\nuser: %s\ndatabase: %s\nlistener: %s\nsource: %s\n",
		orNone(p.Identity), orNone(p.User), orNone(p.Database), orNone(p.Listener), src)
}

func printSQL(w io.Writer, res *classify.Result) {
	if res.Err != nil {
		fmt.Fprintf(w, "sql: not parsed: %v\n", res.Err)
		return
	}
	for i, st := range res.Statements {
		kinds := make([]string, len(st.Kinds))
		for j, k := range st.Kinds {
			kinds[j] = string(k)
		}
		fmt.Fprintf(w, "statement %d: %s\n  kinds: %s\n  tables: %s\n  functions: %s\n  read-only: %v\n",
			i+1, st.Kind, list(kinds), list(st.Tables), list(st.Functions), st.ReadOnly)
	}
}

func printRedis(w io.Writer, cmd policy.RedisCommand, known bool) {
	name := cmd.Name
	if !known {
		name += " (not in the command table)"
	}
	keys := make([]string, len(cmd.Keys))
	for i, k := range cmd.Keys {
		keys[i] = strconv.Quote(string(k))
	}
	fmt.Fprintf(w, "redis command: %s\n  categories: %s\n  keys: %s\n", name, list(cmd.Categories), list(keys))
	if cmd.UndeclaredKeys {
		fmt.Fprintln(w, "  undeclared keys: yes (a rule that restricts keys refuses it)")
	}
}

func list(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, " ")
}

func printDecision(w io.Writer, d policy.Decision, sql bool) {
	fmt.Fprintf(w, "action: %s\nrule: %s\n", d.Outcome(), d.Rule)
	if d.Limit != "" {
		fmt.Fprintf(w, "limit: %s\n", d.Limit)
	}
	if d.Delay > 0 {
		fmt.Fprintf(w, "delay: %s\n", d.Delay)
	}
	if d.Message != "" {
		fmt.Fprintf(w, "message: %s\n", d.Message)
	}
	if d.Action == policy.Allow {
		return
	}
	if sql {
		code, msg := d.PostgresError()
		fmt.Fprintf(w, "client gets: ERROR %s %s\n", code, msg)
	} else {
		fmt.Fprintf(w, "client gets: -%s\n", d.RedisError())
	}
}
