package testenv

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestProcessStopLadder(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	tests := []struct {
		name       string
		script     string
		wantKilled bool
	}{
		// Exits on the stop signal.
		{"polite", "sleep 60 & wait", false},
		// Ignores SIGTERM, and so does its child: both get SIGKILL.
		{"stubborn", `trap "" TERM; sleep 60 & wait`, true},
		// The leader exits at once and leaves a child behind in its group.
		{"straggler", "sleep 60 & exit 0", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p, err := startProcess(procSpec{
				name:       tt.name,
				path:       sh,
				args:       []string{"-c", tt.script},
				logPath:    filepath.Join(t.TempDir(), "log"),
				stopSignal: syscall.SIGTERM,
				grace:      300 * time.Millisecond,
			})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond) // let the script set up
			err = p.stop()
			if killed := err != nil; killed != tt.wantKilled {
				t.Fatalf("stop() = %v, want killed=%v", err, tt.wantKilled)
			}
			if !p.exited() {
				t.Fatal("leader not reaped after stop")
			}
			if groupAlive(p.pid()) {
				t.Fatalf("process group %d still has members after stop", p.pid())
			}
			if err2 := p.stop(); err2 != err {
				t.Fatalf("second stop() = %v, want the first result %v", err2, err)
			}
		})
	}
}

// TestLaunchRetriesTakenPort makes the first attempt use a port that is in
// use and checks that launchServer moves on to another.
func TestLaunchRetriesTakenPort(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: -short")
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("testenv: redis-server not found on PATH (apt-get install redis-server)")
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := busy.Addr().(*net.TCPAddr).Port

	dir := t.TempDir()
	attempts := 0
	p, port, err := launchServer(launchSpec{
		name:    "redis-server",
		timeout: 10 * time.Second,
		build: func(port int) procSpec {
			attempts++
			if attempts == 1 {
				port = busyPort
			}
			return procSpec{
				name:       "redis-server",
				path:       bin,
				args:       []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir},
				logPath:    filepath.Join(dir, "redis.log"),
				stopSignal: syscall.SIGTERM,
			}
		},
		ready: func(ctx context.Context, port int) error {
			return redisPing(ctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil)
		},
	}, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.stop() })
	if attempts != 2 || port == busyPort {
		t.Fatalf("attempts = %d, port = %d (busy %d); want a second attempt on another port", attempts, port, busyPort)
	}
}

func TestRedisConfQuoting(t *testing.T) {
	conf := redisConf("/tmp/x y", RedisOptions{
		RequirePass: `a "b"`,
		ACLUsers:    []RedisACLUser{{Name: "u", Password: "p w", Rules: "~k:* +get"}, {Name: "n"}},
	})
	for _, want := range []string{
		`dir "/tmp/x y"`,
		`requirepass "a \"b\""`,
		`user u on ">p w" ~k:* +get`,
		`user n on nopass ~* &* +@all`,
		`save ""`,
	} {
		if !strings.Contains(conf, want+"\n") {
			t.Errorf("redis.conf lacks %q:\n%s", want, conf)
		}
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		sign int
	}{
		{"15", "9.6", 1},
		{"9.6", "10", -1},
		{"16", "16", 0},
		{"17", "15", 1},
	}
	for _, tt := range tests {
		got := compareVersions(tt.a, tt.b)
		if (got > 0) != (tt.sign > 0) || (got < 0) != (tt.sign < 0) {
			t.Errorf("compareVersions(%q, %q) = %d, want sign %d", tt.a, tt.b, got, tt.sign)
		}
	}
}
