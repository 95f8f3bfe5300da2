package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/outrigger/outrigger/config"
	"github.com/outrigger/outrigger/pg/classify"
)

func TestEnforces(t *testing.T) {
	var nilEngine *Engine
	if nilEngine.Enforces() {
		t.Error("a nil engine enforces")
	}
	if compileT(t, config.Policy{}).Enforces() {
		t.Error("an empty policy enforces")
	}
	if !compileT(t, config.Policy{Default: "deny"}).Enforces() {
		t.Error("default deny does not enforce")
	}
	if !compileT(t, limitPolicy()).Enforces() {
		t.Error("a policy with a rule does not enforce")
	}
	var live *Live
	if live.Load() != nil {
		t.Error("a nil Live has an engine")
	}
	live = &Live{}
	eng := compileT(t, config.Policy{})
	live.Store(eng)
	if live.Load() != eng {
		t.Error("Load does not return what Store stored")
	}
}

// AuthorizePostgres (a Parse) spends no rate-limit token: only the runs of
// a statement count against a limit.
func TestAuthorizeSpendsNoToken(t *testing.T) {
	clock := newFakeClock()
	eng := compileT(t, limitPolicy(config.RateLimit{Name: "rl", When: config.Match{User: "*"}, Rate: 1, Burst: 2, Per: "client", OnLimit: "reject"}), WithClock(clock))
	s := eng.Session(Principal{User: "app", Listener: "l"})
	st := classify.Classify("SELECT 1")
	for range 100 {
		if d := s.AuthorizePostgres(bg, st); d.Action != Allow {
			t.Fatalf("authorize: %+v", d)
		}
	}
	for i := range 2 {
		if d := s.CheckPostgres(bg, st); d.Action != Allow {
			t.Fatalf("run %d: %+v", i, d)
		}
	}
	if d := s.CheckPostgres(bg, st); d.Action != RateLimited {
		t.Fatalf("third run within the burst of 2: %+v", d)
	}
}

// The decision log has a line per refusal, with who and what decided and
// the statement kinds, never the query text; a flood is summarised.
func TestDecisionLog(t *testing.T) {
	var buf bytes.Buffer
	p := config.Policy{Default: "allow", Rules: []config.Rule{{Name: "ro", When: config.Match{User: "app"}, Postgres: &config.PostgresRule{Statements: []string{"select"}}}}}
	eng := compileT(t, p, WithLogger(slog.New(slog.NewJSONHandler(&buf, nil))))
	s := eng.Session(Principal{Identity: "spiffe://td/app", User: "app", Database: "db", Listener: "pg"})
	secret := "DELETE FROM t WHERE token = 'hunter2'"
	for range decisionLogBurst + 50 {
		if d := s.CheckPostgres(bg, classify.Classify(secret)); d.Action != Deny {
			t.Fatalf("%+v", d)
		}
	}
	if d := s.CheckPostgres(bg, classify.Classify("SELECT 1")); d.Action != Allow {
		t.Fatalf("%+v", d)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) < decisionLogBurst || len(lines) > decisionLogBurst+5 {
		t.Fatalf("%d lines for %d refusals, want about the burst of %d", len(lines), decisionLogBurst+50, decisionLogBurst)
	}
	if strings.Contains(buf.String(), "hunter2") {
		t.Fatal("the decision log carries query text")
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"outcome": "deny", "rule": "ro", "principal": "spiffe://td/app", "user": "app", "database": "db", "listener": "pg"} {
		if first[k] != want {
			t.Errorf("%s = %v, want %v", k, first[k], want)
		}
	}
	if kinds, _ := first["statement_kinds"].([]any); len(kinds) != 1 || kinds[0] != "delete" {
		t.Errorf("statement_kinds = %v", first["statement_kinds"])
	}
}

func TestDecisionWait(t *testing.T) {
	if !(Decision{}).Wait(context.Background()) {
		t.Error("a decision without delay does not go on")
	}
	if !(Decision{Delay: time.Millisecond}).Wait(context.Background()) {
		t.Error("a delayed decision does not go on after its delay")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if (Decision{Delay: time.Hour}).Wait(ctx) {
		t.Error("a delayed decision goes on though its context ended")
	}
}
