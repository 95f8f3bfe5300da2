package pg

import (
	"log/slog"

	"github.com/outrigger/outrigger/metrics"
	"github.com/outrigger/outrigger/sidecar"
)

func testEnv() sidecar.Env {
	return sidecar.Env{Name: "test", Logger: slog.New(slog.DiscardHandler), Metrics: metrics.New(metrics.BuildInfo{})}
}
