package config

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"math"
	"reflect"
	"sort"
)

// Hash returns a stable hex digest of v: equal configurations give equal
// digests, whatever the order of map keys. Secret values take part in the
// digest (a changed password is a changed config) without ever being printed.
// The runtime uses it to carry unchanged listeners, pools and TLS profiles
// across a reload.
func Hash(v any) string {
	h := sha256.New()
	hashValue(h, reflect.ValueOf(v))
	return hex.EncodeToString(h.Sum(nil)[:16])
}

func hashValue(h hash.Hash, v reflect.Value) {
	var buf [8]byte
	writeInt := func(n uint64) {
		binary.LittleEndian.PutUint64(buf[:], n)
		h.Write(buf[:])
	}
	writeString := func(s string) {
		writeInt(uint64(len(s)))
		h.Write([]byte(s))
	}
	if !v.IsValid() {
		h.Write([]byte{0})
		return
	}
	h.Write([]byte{byte(v.Kind())})
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			h.Write([]byte{0})
			return
		}
		hashValue(h, v.Elem())
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < v.NumField(); i++ {
			if f := t.Field(i); !f.IsExported() || f.Tag.Get("json") == "-" {
				continue // Config.Path: where a config came from is not what it says
			}
			writeString(t.Field(i).Name)
			hashValue(h, v.Field(i))
		}
	case reflect.Slice, reflect.Array:
		writeInt(uint64(v.Len()))
		for i := 0; i < v.Len(); i++ {
			hashValue(h, v.Index(i))
		}
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool {
			return fmt.Sprint(keys[i].Interface()) < fmt.Sprint(keys[j].Interface())
		})
		writeInt(uint64(len(keys)))
		for _, k := range keys {
			hashValue(h, k)
			hashValue(h, v.MapIndex(k))
		}
	case reflect.String:
		writeString(v.String())
	case reflect.Bool:
		if v.Bool() {
			writeInt(1)
		} else {
			writeInt(0)
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		writeInt(uint64(v.Int()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		writeInt(v.Uint())
	case reflect.Float32, reflect.Float64:
		writeInt(math.Float64bits(v.Float()))
	default:
		writeString(fmt.Sprint(v.Interface()))
	}
}
