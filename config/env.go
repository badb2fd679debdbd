package config

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// EnvName returns the environment variable that overrides the field at path:
// "pipelines.0.batch.size" gives "JETFOLD_PIPELINES_0_BATCH_SIZE".
func EnvName(path string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
}

// OtherEnv are the JETFOLD_ variables that jetfold reads for itself and that set no field:
// failpoints of the crash tests, and the tests' own knobs.
var OtherEnv = []string{"JETFOLD_FAILPOINTS", "JETFOLD_FAILPOINT_P", "JETFOLD_CRASH_SEED", "JETFOLD_CRASH_DIR", "JETFOLD_LONG_TESTS"}

// applyEnv sets the values of the JETFOLD_ variables of environ in the decoded tree raw, and
// returns the names of those that match no field path (and are not in [OtherEnv]), sorted,
// with the names that would. When a name appears twice in environ the last one wins.
func (c *Config) applyEnv(raw map[string]any, environ []string) (ignored, known []string) {
	vars := map[string]string{}
	for _, kv := range environ {
		name, val, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(name, EnvPrefix) && !slices.Contains(OtherEnv, name) {
			vars[name] = val
		}
	}
	if len(vars) == 0 {
		return nil, nil
	}
	paths := map[string][]string{}
	envPaths(configType, raw, "", func(p string) {
		n := EnvName(p)
		if !slices.Contains(paths[n], p) {
			paths[n] = append(paths[n], p)
		}
	})
	for _, name := range sortedKeys(vars) {
		applied := false
		for _, p := range paths[name] {
			if setRaw(raw, p, vars[name]) {
				c.env[p] = name
				applied = true
			}
		}
		if !applied {
			ignored = append(ignored, name)
		}
	}
	if len(ignored) > 0 {
		known = sortedKeys(paths)
	}
	return ignored, known
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
			envPaths(f.typ, m[f.name], joinPath(path, f.name), add)
		}
	case t.Kind() == reflect.Slice:
		list, _ := v.([]any)
		elem := t.Elem()
		if elem.Kind() != reflect.Struct && elem != operatorType {
			add(path) // the whole list, as "a,b,c"
		}
		for i, item := range list {
			envPaths(elem, item, joinPath(path, strconv.Itoa(i)), add)
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
			leafPaths(c, joinPath(path, k), add)
		}
	case map[any]any:
		for k, c := range x {
			leafPaths(c, joinPath(path, keyString(k)), add)
		}
	case []any:
		for i, c := range x {
			leafPaths(c, joinPath(path, strconv.Itoa(i)), add)
		}
	default:
		add(path)
	}
}

// setRaw sets the value at path in the decoded tree root, creating the maps that are missing
// on the way. It reports false when the path goes through a scalar or past the end of a list.
func setRaw(root map[string]any, path, val string) bool {
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
		if err != nil || !isIndex(seg) || i >= len(x) {
			return false
		}
		x[i] = child
		return true
	}
	return false
}
