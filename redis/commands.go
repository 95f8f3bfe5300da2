package redis

import (
	"sort"
	"strings"
)

// The command table in commands_gen.go is generated from a live Redis
// server's COMMAND reply. To regenerate it, start a throwaway server and
// point the generator at it, from the module root:
//
//	redis-server --port 6399 --save "" --appendonly no --daemonize no &
//	OUTRIGGER_REDIS_ADDR=127.0.0.1:6399 go generate ./redis/
//	kill %1   # or kill <pid>
//
// Without OUTRIGGER_REDIS_ADDR the generator uses 127.0.0.1:6379.
// TestCommandTableCoversLiveServer fails when the server it starts knows a
// command that the table lacks.
//
//go:generate go run ./internal/gencommands -addr=${OUTRIGGER_REDIS_ADDR} -out commands_gen.go

// Command is one entry of the command table: what COMMAND says about a Redis
// command or subcommand. Entries are shared and must not be modified.
type Command struct {
	// Name is the lower-case name, "get"; a subcommand's is
	// "container|sub", "config|get".
	Name string
	// Arity is the number of arguments including the command name (and the
	// subcommand name); negative means at least -Arity. See CheckArity.
	Arity int
	// Flags are the command flags.
	Flags Flag
	// FirstKey, LastKey and Step are the legacy key positions (Redis < 7
	// clients); Keys uses KeySpecs instead.
	FirstKey, LastKey, Step int
	// Categories are the ACL categories.
	Categories Category
	// KeySpecs say where the keys are, in the order Redis reports them.
	KeySpecs []KeySpec
	// Subcommands, for a container command such as CONFIG or CLIENT, maps
	// the lower-case subcommand name ("get") to its entry.
	Subcommands map[string]*Command

	// keys finds the keys of a command whose key specs cannot (SORT STORE,
	// MIGRATE KEYS); see keys.go.
	keys keysFunc
	// catNames are Categories' names ("@read"), made once at init and
	// shared by every policy check of the command (see PolicyCommand).
	catNames []string
	// operation is Name in upper case ("GET", "CLIENT|SETNAME"), made once
	// at init for span names (see observe.go).
	operation string
	// stateful marks the commands a session handles itself or that change
	// its connection state (the cases of session.dispatch).
	stateful bool
	// outOfBand marks the commands that run on a connection of their own
	// (see outOfBandCommands).
	outOfBand bool
}

// KeySpec is a Redis 7 key specification: where to start looking for keys
// (Begin), and how to find them from there (Find).
type KeySpec struct {
	Flags KeyFlag
	Begin BeginSearch
	Find  FindKeys
}

// BeginSearchType says how a KeySpec finds its first key's neighbourhood.
type BeginSearchType uint8

// The begin_search types. The zero value is BeginUnknown: the keys cannot be
// found from the spec alone.
const (
	BeginUnknown BeginSearchType = iota
	BeginIndex                   // at argument Index
	BeginKeyword                 // after Keyword, searched from StartFrom
)

// BeginSearch is the begin_search part of a KeySpec.
type BeginSearch struct {
	Type BeginSearchType
	// Index is the argument where the search begins (BeginIndex); the
	// command name is argument 0.
	Index int
	// Keyword (upper case) is looked for, ignoring case, from argument
	// StartFrom: forwards when StartFrom > 0, backwards from
	// len(args)+StartFrom when negative. Keys begin just after it
	// (BeginKeyword).
	Keyword   string
	StartFrom int
}

// FindKeysType says how a KeySpec finds keys once the search has begun.
type FindKeysType uint8

// The find_keys types. The zero value is FindUnknown.
const (
	FindUnknown FindKeysType = iota
	FindRange                // keys from the begin point to LastKey, every KeyStep
	FindKeyNum               // the argument at KeyNumIdx counts the keys
)

// FindKeys is the find_keys part of a KeySpec.
type FindKeys struct {
	Type FindKeysType
	// LastKey (FindRange) is the last key relative to the begin point, or
	// if negative relative to the end (-1 is the last argument); with Limit
	// > 0 (and LastKey -1) the keys are the first 1/Limit of the rest.
	LastKey int
	// KeyStep is the distance between keys (FindRange and FindKeyNum).
	KeyStep int
	Limit   int
	// KeyNumIdx (FindKeyNum) is where the key count is, relative to the
	// begin point; FirstKey is where the first key is, relative to it too.
	KeyNumIdx int
	FirstKey  int
}

// maxNameLen bounds the names Lookup lowercases on the stack; no command or
// subcommand name is longer (a test checks the table).
const maxNameLen = 32

// Lookup returns the table entry for the command in args (args[0] is the
// command name, matched ignoring case), or nil if Redis has no such command.
// For a container command with a known subcommand in args[1] (CONFIG GET,
// CLIENT SETNAME, XINFO STREAM) it returns the subcommand's entry; with no
// or an unknown subcommand it returns the container, whose Subcommands is
// not empty, and Redis will answer with an error. Lookup does not allocate.
func Lookup(args [][]byte) *Command {
	if len(args) == 0 {
		return nil
	}
	c := lookupName(commandTable, args[0])
	if c == nil || c.Subcommands == nil || len(args) < 2 {
		return c
	}
	if sub := lookupName(c.Subcommands, args[1]); sub != nil {
		return sub
	}
	return c
}

// lookupName looks name up in m, whose keys are lower case, without
// allocating: the lower-case copy lives on the stack, and the compiler does
// not copy string(b) for a map index.
func lookupName(m map[string]*Command, name []byte) *Command {
	if len(name) == 0 || len(name) > maxNameLen {
		return nil
	}
	var buf [maxNameLen]byte
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return m[string(buf[:len(name)])]
}

// CheckArity reports whether argc arguments (the command name, and the
// subcommand name, included) suit c's arity, as Redis checks before running
// a command.
func (c *Command) CheckArity(argc int) bool {
	if c.Arity >= 0 {
		return argc == c.Arity
	}
	return argc >= -c.Arity
}

// Commands returns every top-level command of the table sorted by name (a
// new slice each call; the entries are shared).
func Commands() []*Command {
	out := make([]*Command, 0, len(commandTable))
	for _, c := range commandTable {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func init() {
	for _, c := range commandTable {
		setCategoryNames(c)
		setOperation(c)
	}
	for _, name := range statefulCommands {
		if c := commandByName(name); c != nil {
			c.stateful = true
		}
	}
	for _, name := range outOfBandCommands {
		if c := commandByName(name); c != nil {
			c.outOfBand = true
		}
	}
	for name, f := range keyProcs {
		if c := commandTable[name]; c != nil {
			c.keys = f
		}
	}
}

// commandByName finds a command by its table name ("get", "client|id").
func commandByName(name string) *Command {
	top, sub, ok := strings.Cut(name, "|")
	c := commandTable[top]
	if c == nil || !ok {
		return c
	}
	return c.Subcommands[sub]
}
