package config

import (
	"strconv"
	"strings"
)

// PartitionToken reads a stream subject transform's destination that stores each message
// under its partition: its first token is `{{partition(N,T)}}` (nats-server's mapping
// function, spaces allowed), FNV-1a of subject token T modulo N. It returns N and T, or ok
// false for any other destination (one hashing several tokens included: no single key
// agrees with it).
func PartitionToken(dest string) (n, token int, ok bool) {
	first, _, _ := strings.Cut(dest, ".")
	f := strings.TrimSpace(first)
	if !strings.HasPrefix(f, "{{") || !strings.HasSuffix(f, "}}") {
		return 0, 0, false
	}
	f = strings.TrimSpace(f[2 : len(f)-2])
	name, args, found := strings.Cut(f, "(")
	if !found || !strings.EqualFold(strings.TrimSpace(name), "partition") || !strings.HasSuffix(args, ")") {
		return 0, 0, false
	}
	parts := strings.Split(strings.TrimSuffix(args, ")"), ",")
	if len(parts) != 2 {
		return 0, 0, false
	}
	n, err1 := strconv.Atoi(strings.TrimSpace(parts[0]))
	token, err2 := strconv.Atoi(strings.TrimSpace(parts[1]))
	if err1 != nil || err2 != nil || n < 1 || token < 1 {
		return 0, 0, false
	}
	return n, token, true
}

// PartitionSubject returns the subject filter of partition i of a source partitioned by
// subject (see [Source.PartitionedBySubject]): `<i>.>`, or the source's one subject with its
// first token (a wildcard) replaced by i.
func PartitionSubject(subjects []string, i int) string {
	if len(subjects) == 0 {
		return strconv.Itoa(i) + ".>"
	}
	first, rest, found := strings.Cut(subjects[0], ".")
	if first == ">" {
		return strconv.Itoa(i) + ".>"
	}
	if !found {
		return strconv.Itoa(i)
	}
	return strconv.Itoa(i) + "." + rest
}
