package redis

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestCommandReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string // each command's args joined by spaces
		err  error
	}{
		{"resp", "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", []string{"GET k"}, nil},
		{"pipeline", "*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\nb\r\n", []string{"PING", "SET a b"}, nil},
		{"inline", "PING\r\nset  a\tb\n", []string{"PING", "set a b"}, nil},
		{"empty lines and arrays skipped", "\r\n*0\r\n*-1\r\nPING\r\n", []string{"PING"}, nil},
		{"binary bulk", "*2\r\n$4\r\nECHO\r\n$4\r\na\r\nb\r\n", []string{"ECHO a\r\nb"}, nil},
		{"leading zero count", "*01\r\n$1\r\n0\r\n", nil, ErrProtocol},
		{"plus-signed bulk length", "*1\r\n$+4\r\nPING\r\n", nil, ErrProtocol},
		{"negative bulk", "*1\r\n$-1\r\n", nil, ErrProtocol},
		{"integer element", "*1\r\n:1\r\n", nil, ErrProtocol},
		{"nested array", "*1\r\n*1\r\n$1\r\na\r\n", nil, ErrProtocol},
		{"huge count", "*9223372036854775807\r\n", nil, ErrProtocol},
		{"huge bulk", "*1\r\n$9223372036854775807\r\n", nil, ErrCommandTooLarge},
		{"over the limit", "*1\r\n$2000\r\n" + strings.Repeat("x", 2000) + "\r\n", nil, ErrCommandTooLarge},
		{"missing CRLF after bulk", "*1\r\n$4\r\nPINGxx", nil, ErrProtocol},
	}
	for _, tt := range tests {
		for _, oneByte := range []bool{false, true} {
			t.Run(tt.name, func(t *testing.T) {
				var r = strings.NewReader(tt.in)
				cr := NewCommandReader(r, 1024)
				if oneByte {
					cr = NewCommandReader(iotest.OneByteReader(strings.NewReader(tt.in)), 1024)
				}
				var got []string
				var err error
				for {
					var cmd Cmd
					cmd, err = cr.Next()
					if err != nil {
						break
					}
					parts := make([]string, len(cmd.Args))
					for i, a := range cmd.Args {
						parts[i] = string(a)
					}
					got = append(got, strings.Join(parts, " "))
					if want := encodeCommand(cmd.Args); string(want) != string(cmd.Raw) {
						t.Errorf("Raw %q, want %q", cmd.Raw, want)
					}
				}
				if strings.Join(got, "|") != strings.Join(tt.want, "|") {
					t.Errorf("commands %q, want %q", got, tt.want)
				}
				if tt.err == nil && !errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("err = %v, want EOF", err)
				}
				if tt.err != nil && !errors.Is(err, tt.err) {
					t.Errorf("err = %v, want %v", err, tt.err)
				}
			})
		}
	}
}

// BenchmarkCommandReader reads a stream of small pipelined commands, as a
// redis-benchmark client sends them.
func BenchmarkCommandReader(b *testing.B) {
	cmd := "*3\r\n$3\r\nSET\r\n$16\r\nkey:000000000001\r\n$3\r\nxxx\r\n"
	stream := strings.Repeat(cmd, 1024)
	r := strings.NewReader(stream)
	cr := NewCommandReader(r, 1<<20)
	b.SetBytes(int64(len(cmd)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := cr.Next(); err != nil {
			r.Reset(stream)
			cr = NewCommandReader(r, 1<<20)
			if _, err := cr.Next(); err != nil {
				b.Fatal(err)
			}
		}
	}
}
