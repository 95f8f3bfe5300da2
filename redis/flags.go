package redis

import (
	"strconv"
	"strings"
)

// Flag is a set of command flags, as COMMAND reports them ("write",
// "readonly", "denyoom", ...). The table in commands_gen.go sets them; Names
// and ParseFlag convert to and from Redis's spelling.
type Flag uint32

// The command flags. Some appear only in some Redis versions (MayReplicate
// in 6.2, AllowBusy and NoAsyncLoading from 7.0); the generator refuses a
// flag it does not know, so a new one is added here first.
const (
	FlagWrite           Flag = 1 << iota // may modify the keyspace
	FlagReadOnly                         // reads the keyspace, never modifies it
	FlagDenyOOM                          // refused when maxmemory is reached
	FlagModule                           // implemented by a module
	FlagAdmin                            // administrative
	FlagPubSub                           // publish/subscribe
	FlagNoScript                         // not allowed in scripts
	FlagBlocking                         // may block the client (see IsBlocking)
	FlagLoading                          // allowed while the dataset loads
	FlagStale                            // allowed on a replica with stale data
	FlagSkipMonitor                      // not shown in MONITOR
	FlagSkipSlowlog                      // not shown in SLOWLOG
	FlagAsking                           // allowed during slot migration (cluster)
	FlagFast                             // O(1) or O(log N)
	FlagNoAuth                           // allowed before AUTH
	FlagMayReplicate                     // may be replicated even if read-only
	FlagNoMandatoryKeys                  // may take keys but need not
	FlagNoMulti                          // not allowed inside MULTI
	FlagMovableKeys                      // key positions depend on the arguments
	FlagAllowBusy                        // allowed while a script or module is busy
	FlagNoAsyncLoading                   // refused during async loading (repl-diskless-load)
	FlagRandom                           // non-deterministic output (Redis 6 and older)
	FlagSortForScript                    // output sorted for scripts (Redis 6 and older)
)

var flagNames = [...]string{
	"write", "readonly", "denyoom", "module", "admin", "pubsub", "noscript",
	"blocking", "loading", "stale", "skip_monitor", "skip_slowlog", "asking",
	"fast", "no_auth", "may_replicate", "no_mandatory_keys", "no_multi",
	"movablekeys", "allow_busy", "no_async_loading", "random", "sort_for_script",
}

// ParseFlag returns the Flag that Redis spells name ("readonly"), ignoring
// case, and whether there is one.
func ParseFlag(name string) (Flag, bool) {
	for i, n := range flagNames {
		if strings.EqualFold(n, name) {
			return Flag(1) << i, true
		}
	}
	return 0, false
}

// Names returns the Redis names of the flags in f, in the order of the
// constants.
func (f Flag) Names() []string { return bitNames(uint64(f), flagNames[:], "") }

// String returns the names of f joined with "|".
func (f Flag) String() string { return strings.Join(f.Names(), "|") }

// KeyFlag is a set of key-specification flags (Redis 7 key specs): how a
// command uses the keys one KeySpec finds.
type KeyFlag uint16

// The key-specification flags, spelled by Redis as "RO", "RW", "OW", "RM",
// "access", "update", "insert", "delete", "not_key", "incomplete" and
// "variable_flags".
const (
	KeyRO            KeyFlag = 1 << iota // read only
	KeyRW                                // read and write
	KeyOW                                // overwrite without reading
	KeyRM                                // remove
	KeyAccess                            // returns, copies or uses user data
	KeyUpdate                            // updates data in place
	KeyInsert                            // adds data, never modifies or deletes
	KeyDelete                            // deletes data
	KeyNotKey                            // the argument is not a key (not returned by Keys)
	KeyIncomplete                        // the spec may miss keys; Keys falls back to the command's own rule
	KeyVariableFlags                     // the flags depend on the arguments
)

var keyFlagNames = [...]string{
	"RO", "RW", "OW", "RM", "access", "update", "insert", "delete",
	"not_key", "incomplete", "variable_flags",
}

// ParseKeyFlag returns the KeyFlag that Redis spells name ("RW"), ignoring
// case, and whether there is one.
func ParseKeyFlag(name string) (KeyFlag, bool) {
	for i, n := range keyFlagNames {
		if strings.EqualFold(n, name) {
			return KeyFlag(1) << i, true
		}
	}
	return 0, false
}

// Names returns the Redis names of the flags in f, in the order of the
// constants.
func (f KeyFlag) Names() []string { return bitNames(uint64(f), keyFlagNames[:], "") }

// String returns the names of f joined with "|".
func (f KeyFlag) String() string { return strings.Join(f.Names(), "|") }

// bitNames returns prefix+names[i] for every bit i set in bits; a bit
// without a name is shown as its number.
func bitNames(bits uint64, names []string, prefix string) []string {
	var out []string
	for i := 0; bits != 0; i++ {
		if bits&1 != 0 {
			if i < len(names) {
				out = append(out, prefix+names[i])
			} else {
				out = append(out, prefix+"bit"+strconv.Itoa(i))
			}
		}
		bits >>= 1
	}
	return out
}
