package config

import (
	"bytes"
	"context"
	"crypto/sha256"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Change reports that the config file's content changed.
type Change struct {
	// At is when the first file event of the change was seen: the start of the
	// config push latency.
	At time.Time
}

// Watcher reports changes to one config file. It watches the file's folder
// rather than the file, so it sees editors that replace the file by rename and
// the `..data` symlink swap of a Kubernetes ConfigMap volume, and it reports a
// change only when the file's bytes differ from the last ones seen.
type Watcher struct {
	path     string
	debounce time.Duration
	w        *fsnotify.Watcher
	last     [32]byte
}

// NewWatcher starts watching path. Close it with the context passed to Run.
func NewWatcher(path string, debounce time.Duration) (*Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		w.Close()
		return nil, err
	}
	dirs := []string{filepath.Dir(abs)}
	if real, err := filepath.EvalSymlinks(abs); err == nil && filepath.Dir(real) != dirs[0] {
		dirs = append(dirs, filepath.Dir(real))
	}
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			w.Close()
			return nil, err
		}
	}
	cw := &Watcher{path: abs, debounce: debounce, w: w}
	cw.last, _ = cw.digest()
	return cw, nil
}

func (cw *Watcher) digest() ([32]byte, bool) {
	b, err := os.ReadFile(cw.path)
	if err != nil {
		return [32]byte{}, false
	}
	return sha256.Sum256(b), true
}

// Run sends a Change on out for each settled change of the file's content,
// until ctx ends. Errors from the OS watcher are passed to onErr.
func (cw *Watcher) Run(ctx context.Context, out chan<- Change, onErr func(error)) {
	defer cw.w.Close()
	var first time.Time
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case err, ok := <-cw.w.Errors:
			if !ok {
				return
			}
			if onErr != nil {
				onErr(err)
			}
		case _, ok := <-cw.w.Events:
			if !ok {
				return
			}
			if first.IsZero() {
				first = time.Now()
			}
			timer.Reset(cw.debounce)
		case <-timer.C:
			at := first
			first = time.Time{}
			sum, ok := cw.digest()
			if !ok || bytes.Equal(sum[:], cw.last[:]) {
				continue
			}
			cw.last = sum
			select {
			case out <- Change{At: at}:
			case <-ctx.Done():
				return
			}
		}
	}
}
