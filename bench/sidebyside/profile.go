package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/outrigger/outrigger/bench"
)

// captureProfiles fetches a CPU profile and an allocation profile (the
// allocations of the same window, not since start) of seconds from
// Outrigger's admin server while work runs case c against Outrigger again
// and again. The runs are not counted. Files go to outDir as
// profile-<case>-cpu.pb.gz and profile-<case>-allocs.pb.gz.
func captureProfiles(ctx context.Context, admin, caseID string, seconds int, outDir string, work func(context.Context)) []bench.Profile {
	kinds := []struct{ kind, path string }{
		{"cpu", fmt.Sprintf("/debug/pprof/profile?seconds=%d", seconds)},
		{"allocs", fmt.Sprintf("/debug/pprof/allocs?seconds=%d", seconds)},
	}
	profiles := make([]bench.Profile, len(kinds))
	wctx, stopWork := context.WithCancel(ctx)
	workDone := make(chan struct{})
	go func() {
		defer close(workDone)
		for wctx.Err() == nil {
			work(wctx)
		}
	}()
	var wg sync.WaitGroup
	for i, k := range kinds {
		wg.Go(func() {
			name := fmt.Sprintf("profile-%s-%s.pb.gz", caseID, k.kind)
			profiles[i] = bench.Profile{Case: caseID, Kind: k.kind, Path: name, Seconds: seconds}
			if err := fetch(ctx, "http://"+admin+k.path, filepath.Join(outDir, name), time.Duration(seconds)*time.Second+time.Minute); err != nil {
				profiles[i].Error = err.Error()
			}
		})
	}
	wg.Wait()
	stopWork()
	<-workDone
	return profiles
}

func fetch(ctx context.Context, url, path string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		return fmt.Errorf("%s: %s: %s", url, resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
