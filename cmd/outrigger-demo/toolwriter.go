package main

import (
	"bytes"
	"io"
	"os"
	"strings"
	"sync"
)

// toolWriter shows a client tool's output as it comes, each line behind a
// prefix, and keeps a copy for parsing. Segments that end in \r are progress
// lines the tool redraws in place (redis-benchmark): on a terminal they are
// redrawn in place too, padded to cover the previous one; elsewhere each
// becomes a line of its own. Blank lines, and the blank segments that only
// clear the screen line, are dropped.
type toolWriter struct {
	mu      sync.Mutex
	out     io.Writer
	prefix  string
	tty     bool
	line    []byte       // the segment being collected
	drawn   int          // width of the progress segment on screen (tty), 0 if none
	capture bytes.Buffer // everything written, unchanged
}

func newToolWriter(out io.Writer, prefix string, tty bool) *toolWriter {
	return &toolWriter{out: out, prefix: prefix, tty: tty}
}

// Write implements io.Writer; it never fails on account of the terminal.
func (w *toolWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.capture.Write(p)
	for _, c := range p {
		switch c {
		case '\n':
			w.emit(false)
		case '\r':
			w.emit(true)
		default:
			w.line = append(w.line, c)
		}
	}
	return len(p), nil
}

// Flush shows a last line that did not end in a newline.
func (w *toolWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.line) > 0 {
		w.emit(false)
	}
	if w.drawn > 0 { // a progress line is still on screen: keep it
		_, _ = io.WriteString(w.out, "\n")
		w.drawn = 0
	}
}

// Captured returns everything the tool wrote.
func (w *toolWriter) Captured() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.capture.String()
}

// emit shows the collected segment; progress says it ended in \r.
func (w *toolWriter) emit(progress bool) {
	text := string(w.line)
	w.line = w.line[:0]
	if strings.TrimSpace(text) == "" {
		return // redis-benchmark clears the line with spaces before redrawing
	}
	if !w.tty {
		_, _ = io.WriteString(w.out, w.prefix+text+"\n")
		return
	}
	s := w.prefix + text
	width := len(s)
	if pad := w.drawn - width; pad > 0 {
		s += strings.Repeat(" ", pad)
	}
	if progress {
		_, _ = io.WriteString(w.out, "\r"+s+"\r")
		w.drawn = width
		return
	}
	if w.drawn > 0 {
		s = "\r" + s
	}
	_, _ = io.WriteString(w.out, s+"\n")
	w.drawn = 0
}

// isTerminal reports whether w is a character device such as a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
