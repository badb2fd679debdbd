package config

import (
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/jetfold/jetfold/config/diag"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/v2"
)

// EnvName returns the environment variable that overrides the field at path:
// "pipelines.0.batch.size" gives "JETFOLD_PIPELINES_0_BATCH_SIZE".
func EnvName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// OtherEnv are the JETFOLD_ variables that jetfold reads for itself and that set no field:
// failpoints of the crash tests, and the tests' own knobs.
var OtherEnv = []string{"JETFOLD_FAILPOINTS", "JETFOLD_FAILPOINT_P", "JETFOLD_CRASH_SEED", "JETFOLD_CRASH_DIR", "JETFOLD_LONG_TESTS", "JETFOLD_BENCH_BREAKDOWN"}

// loadEnv loads the JETFOLD_ variables of environ into k, as koanf's env provider layer over
// the file's, sets c.env and c.IgnoredEnv (the names that set no field, sorted), and returns
// the names that would when there are such.
//
// A name cannot be split on "_" into a path: field names hold underscores (store_dir), and
// operators' maps hold any key. So the provider's callback looks the name up among the paths
// an environment variable may set (see envPaths), computed from the Go types and the file's
// tree. When a name appears twice in environ the last one wins.
func (c *Config) loadEnv(k *koanf.Koanf, environ []string) (known []string, err error) {
	paths := map[string][]string{}
	envPaths(configType, k.Raw(), "", func(p string) { paths[EnvName(p)] = append(paths[EnvName(p)], p) })
	ignored := map[string]bool{}
	provider := env.Provider("", env.Opt{ // "": the paths are split by setRaw, not koanf
		Prefix:      EnvPrefix,
		EnvironFunc: func() []string { return environ },
		TransformFunc: func(name, val string) (string, any) {
			if slices.Contains(OtherEnv, name) {
				return "", nil
			}
			if len(paths[name]) == 0 {
				ignored[name] = true
				return "", nil
			}
			return paths[name][0], val
		},
	})
	// koanf's own merge would replace a list by a map with keys "0", "1"...: this one sets each
	// value at its path, into list items by index. A name that two paths share (keys of an
	// operator's map that differ in case, or in "_" against ".") sets both.
	merge := func(src, dest map[string]any) error {
		for _, p := range sortedKeys(src) {
			name, set := EnvName(p), false
			for _, q := range paths[name] {
				if setRaw(dest, q, src[p]) {
					c.env[q] = name
					set = true
				}
			}
			if !set { // the file has a scalar where the path goes on
				ignored[name] = true
			}
		}
		return nil
	}
	if err := k.Load(provider, nil, koanf.WithMergeFunc(merge)); err != nil {
		return nil, err
	}
	if len(ignored) == 0 {
		return nil, nil
	}
	c.IgnoredEnv = sortedKeys(ignored)
	return sortedKeys(paths), nil
}

// envPaths calls add with every field path that an environment variable may set: every field
// of type t, under every list item present in the decoded tree v, and inside operators every
// path present in v.
func envPaths(t reflect.Type, v any, path string, add func(string)) {
	switch {
	case t == durationType:
		add(path)
	case t == operatorType:
		leafPaths(v, path, add)
	case t.Kind() == reflect.Struct:
		m, _ := v.(map[string]any)
		for _, f := range fieldsOf(t) {
			envPaths(f.typ, m[f.name], diag.JoinPath(path, f.name), add)
		}
	case t.Kind() == reflect.Slice:
		list, _ := v.([]any)
		elem := t.Elem()
		if elem.Kind() != reflect.Struct && elem != operatorType {
			add(path) // the whole list, as "a,b,c"
		}
		for i, item := range list {
			envPaths(elem, item, diag.JoinPath(path, strconv.Itoa(i)), add)
		}
	default:
		add(path)
	}
}

// leafPaths calls add with the path of every scalar in the decoded tree v.
func leafPaths(v any, path string, add func(string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, c := range x {
			leafPaths(c, diag.JoinPath(path, k), add)
		}
	case map[any]any:
		for k, c := range x {
			leafPaths(c, diag.JoinPath(path, keyString(k)), add)
		}
	case []any:
		for i, c := range x {
			leafPaths(c, diag.JoinPath(path, strconv.Itoa(i)), add)
		}
	default:
		add(path)
	}
}

// setRaw sets the value at path in the decoded tree root, creating the maps that are missing
// on the way. It reports false when the path goes through a scalar or past the end of a list.
func setRaw(root map[string]any, path string, val any) bool {
	segs := strings.Split(path, ".")
	var cur any = root
	for _, seg := range segs[:len(segs)-1] {
		next, ok := rawChild(cur, seg)
		if !ok || next == nil {
			next = map[string]any{}
			if !setChild(cur, seg, next) {
				return false
			}
		}
		cur = next
	}
	return setChild(cur, segs[len(segs)-1], val)
}

// setChild sets the child seg (a map key or an existing list index) of a decoded value.
func setChild(v any, seg string, child any) bool {
	switch x := v.(type) {
	case map[string]any:
		x[seg] = child
		return true
	case map[any]any:
		for k := range x {
			if keyString(k) == seg {
				x[k] = child
				return true
			}
		}
		x[seg] = child
		return true
	case []any:
		i, err := strconv.Atoi(seg)
		if err != nil || !diag.IsIndex(seg) || i >= len(x) {
			return false
		}
		x[i] = child
		return true
	}
	return false
}
