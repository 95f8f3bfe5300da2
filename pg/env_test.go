package pg

import (
	"log/slog"
	"net"

	"github.com/outrigger/outrigger/metrics"
	"github.com/outrigger/outrigger/sidecar"
)

func testEnv() sidecar.Env {
	return sidecar.Env{Name: "test", Logger: slog.New(slog.DiscardHandler), Metrics: metrics.New(metrics.BuildInfo{})}
}

// discardConn is a client connection whose writes go nowhere.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error) { return len(p), nil }
