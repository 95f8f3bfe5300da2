package redis

// IsBlocking reports whether the command in args, which Lookup resolved to
// cmd, may hold its connection until some event or a timeout, so that it
// cannot share a multiplexed upstream connection: every command flagged
// "blocking" (BLPOP, BLMOVE, BZPOPMIN, BLMPOP, ...), XREAD and XREADGROUP
// only when they carry a BLOCK option before STREAMS, and WAIT and WAITAOF,
// which Redis does not flag but which wait for replicas or the AOF.
func IsBlocking(cmd *Command, args [][]byte) bool {
	if cmd == nil {
		return false
	}
	switch cmd.Name {
	case "xread", "xreadgroup":
		return xreadBlocks(args)
	case "wait", "waitaof":
		return true
	}
	return cmd.Flags&FlagBlocking != 0
}

// xreadBlocks parses the options of XREAD and XREADGROUP up to STREAMS, as
// Redis does, and reports whether one is BLOCK.
func xreadBlocks(args [][]byte) bool {
	for i := 1; i < len(args); i++ {
		switch a := args[i]; {
		case equalFold(a, "block"):
			return i+1 < len(args)
		case equalFold(a, "count"):
			i++
		case equalFold(a, "group"):
			i += 2
		case equalFold(a, "noack"):
		default: // STREAMS, or a syntax error Redis will report
			return false
		}
	}
	return false
}
