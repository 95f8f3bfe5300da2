package config

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func waitChange(t *testing.T, ch <-chan Change) Change {
	t.Helper()
	select {
	case c := <-ch:
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no change reported")
	}
	return Change{}
}

func startWatcher(t *testing.T, path string) <-chan Change {
	t.Helper()
	w, err := NewWatcher(path, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ch := make(chan Change, 4)
	go w.Run(ctx, ch, func(err error) { t.Log(err) })
	return ch
}

func TestWatcherSeesRewriteAndRename(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "outrigger.yaml")
	os.WriteFile(p, []byte("a: 1\n"), 0o644)
	ch := startWatcher(t, p)

	os.WriteFile(p, []byte("a: 2\n"), 0o644)
	if c := waitChange(t, ch); c.At.IsZero() {
		t.Error("change without a time")
	}
	// An editor's save: write elsewhere, rename over.
	tmp := filepath.Join(dir, ".outrigger.yaml.swp")
	os.WriteFile(tmp, []byte("a: 3\n"), 0o644)
	os.Rename(tmp, p)
	waitChange(t, ch)
	// Same bytes again: no change.
	os.WriteFile(p, []byte("a: 3\n"), 0o644)
	select {
	case <-ch:
		t.Error("a rewrite with equal bytes was reported")
	case <-time.After(300 * time.Millisecond):
	}
}

// TestWatcherSeesConfigMapSwap mimics a Kubernetes ConfigMap volume: the file
// is a symlink through ..data, which is re-pointed at a new folder atomically.
func TestWatcherSeesConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	v1 := filepath.Join(dir, "..2026_01")
	os.Mkdir(v1, 0o755)
	os.WriteFile(filepath.Join(v1, "outrigger.yaml"), []byte("v: 1\n"), 0o644)
	os.Symlink("..2026_01", filepath.Join(dir, "..data"))
	p := filepath.Join(dir, "outrigger.yaml")
	os.Symlink("..data/outrigger.yaml", p)
	ch := startWatcher(t, p)

	v2 := filepath.Join(dir, "..2026_02")
	os.Mkdir(v2, 0o755)
	os.WriteFile(filepath.Join(v2, "outrigger.yaml"), []byte("v: 2\n"), 0o644)
	os.Symlink("..2026_02", filepath.Join(dir, "..data_tmp"))
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(v1)
	waitChange(t, ch)
	b, _ := os.ReadFile(p)
	if string(b) != "v: 2\n" {
		t.Fatalf("read %q", b)
	}
}
