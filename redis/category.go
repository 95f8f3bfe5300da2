package redis

import (
	"fmt"
	"strings"
)

// Category is a set of Redis ACL categories (@read, @write, ...), as COMMAND
// reports them for each command. Policy rules name categories; ParseCategory
// validates those names and Command.Categories is what they are matched
// against.
type Category uint32

// The ACL categories of Redis 7.0, in the order ACL CAT lists them. Redis
// has no @server category; server commands are @admin (and often @dangerous).
const (
	CatKeyspace Category = 1 << iota
	CatRead
	CatWrite
	CatSet
	CatSortedSet
	CatList
	CatHash
	CatString
	CatBitmap
	CatHyperLogLog
	CatGeo
	CatStream
	CatPubSub
	CatAdmin
	CatFast
	CatSlow
	CatBlocking
	CatDangerous
	CatConnection
	CatTransaction
	CatScripting

	// CatAll is every category above: what "@all" means.
	CatAll = CatScripting<<1 - 1
)

var categoryNames = [...]string{
	"keyspace", "read", "write", "set", "sortedset", "list", "hash", "string",
	"bitmap", "hyperloglog", "geo", "stream", "pubsub", "admin", "fast", "slow",
	"blocking", "dangerous", "connection", "transaction", "scripting",
}

// ParseCategory returns the category named name: "@read" (or "read"),
// ignoring case. "@all" gives CatAll. An unknown name is an error that lists
// the known ones.
func ParseCategory(name string) (Category, error) {
	n := strings.TrimPrefix(name, "@")
	if strings.EqualFold(n, "all") {
		return CatAll, nil
	}
	for i, cn := range categoryNames {
		if strings.EqualFold(cn, n) {
			return Category(1) << i, nil
		}
	}
	return 0, fmt.Errorf("redis: unknown ACL category %q (known: @all %s)", name, strings.Join(CategoryNames(), " "))
}

// CategoryNames returns the name of every category ("@keyspace", "@read",
// ...) in the order of the constants, without "@all". The slice is new on
// each call.
func CategoryNames() []string { return CatAll.Names() }

// Names returns the names of the categories in c ("@read", "@string"), in
// the order of the constants.
func (c Category) Names() []string { return bitNames(uint64(c), categoryNames[:], "@") }

// String returns the names of c separated by spaces.
func (c Category) String() string { return strings.Join(c.Names(), " ") }
