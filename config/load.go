package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/jetfold/jetfold/config/diag"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/v2"
	"go.yaml.in/yaml/v3"
)

// EnvPrefix starts the name of every environment variable that overrides the file.
const EnvPrefix = "JETFOLD_"

// LoadOptions tunes [Load].
type LoadOptions struct {
	// Environ is the environment as "NAME=value" strings; nil means os.Environ(). Only the
	// variables that start with [EnvPrefix] are used.
	Environ []string
}

// Load reads the YAML configuration file at path, applies the JETFOLD_ environment overrides
// of opts.Environ (see the package documentation), decodes it, applies the defaults documented
// on each field and validates it with [Config.Validate].
//
// When the file cannot be read Load returns the [os.ReadFile] error, wrapped. Otherwise every
// problem found (YAML syntax, unknown fields, wrong types, bad durations, failed validation) is
// returned at once, joined with [errors.Join] in file order, each a [*diag.Error] wrapping
// [diag.ErrInvalid]. When the file is valid YAML, the Config is returned with the errors, decoded as
// far as it could be, so that a caller can add its own checks (expressions, operators) to one
// report with [diag.Join]; it is nil for a file that is not YAML. Relative paths in the file are not resolved.
func Load(path string, opts LoadOptions) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c := &Config{
		File:   path,
		pos:    map[string]diag.Pos{},
		keyPos: map[string]diag.Pos{},
		env:    map[string]string{},
		loaded: true,
	}
	// The bytes are read and parsed once, into a yaml.Node: it gives the positions, which koanf
	// does not keep, and its values are koanf's file layer, so both come from the same content.
	root, errs := c.parseNodes(data)
	if len(errs) > 0 {
		return nil, diag.JoinSorted(errs)
	}
	c.indexPositions(root, "")
	file := map[string]any{}
	if root != nil && !isNull(root) {
		if err := root.Decode(&file); err != nil {
			return nil, diag.JoinSorted(c.yamlErrors(data, err))
		}
	}

	// Layers, in koanf: the file, then the JETFOLD_ variables. Defaults come last, on the
	// decoded structs (see setDefaults).
	k := koanf.New(".")
	if err := k.Load(confmap.Provider(file, ""), nil); err != nil {
		return nil, diag.JoinSorted([]*diag.Error{c.Errorf("", "cannot load the configuration: %v", err)})
	}
	environ := opts.Environ
	if environ == nil {
		environ = os.Environ()
	}
	known, err := c.loadEnv(k, environ)
	if err != nil {
		return nil, diag.JoinSorted([]*diag.Error{c.Errorf("", "cannot load the environment: %v", err)})
	}
	raw := k.Raw()
	unknown, invalid := c.decode(k, raw) // reported at one place in this order, with the variables
	errs = append(errs, unknown...)
	for _, name := range c.IgnoredEnv {
		// Like an unknown field in the file: a misspelt variable would otherwise be silently
		// without effect.
		errs = append(errs, &diag.Error{Pos: c.fallbackPos(), Path: name,
			Msg:  fmt.Sprintf("environment variable %s sets no field of the configuration", name),
			Hint: envHint(name, known)})
	}
	errs = append(errs, invalid...)
	c.setDefaults(func(p string) bool {
		v, ok := rawAt(raw, p)
		return ok && v != nil
	})
	errs = append(errs, dropCovered(c.validate(), errs)...)
	if len(errs) > 0 {
		return c, diag.JoinSorted(errs)
	}
	return c, nil
}

// envHint suggests the variable a misspelt one may be, or says how the names are made.
func envHint(name string, known []string) string {
	if m, ok := diag.Suggest(name, known); ok {
		return "did you mean " + m + "?"
	}
	return "a variable is JETFOLD_ and a field's path in upper case with _ between the parts, such as JETFOLD_NATS_URL or JETFOLD_PIPELINES_0_BATCH_SIZE"
}

// parseNodes parses data into a yaml.Node and returns its top level: a map, a null or nil (an
// empty file). It reports syntax errors, a second document, and a top level that is not a map.
func (c *Config) parseNodes(data []byte) (*yaml.Node, []*diag.Error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, c.yamlErrors(data, err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		if n := docRoot(&extra); n != nil && !isNull(n) {
			return nil, []*diag.Error{{Pos: c.nodePos(n), Msg: "the file holds more than one YAML document",
				Hint: "keep the whole configuration in the first document"}}
		}
	case !errors.Is(err, io.EOF):
		return nil, c.yamlErrors(data, err)
	}
	root := docRoot(&doc)
	if root != nil && root.Kind != yaml.MappingNode && !isNull(root) {
		got := "a " + map[yaml.Kind]string{yaml.SequenceNode: "list", yaml.ScalarNode: "scalar",
			yaml.AliasNode: "alias"}[root.Kind]
		return nil, []*diag.Error{{Pos: c.nodePos(root), Msg: "the configuration must be a map, got " + got,
			Hint: "start with a section such as nats:, streams: or pipelines:"}}
	}
	return root, nil
}

// docRoot returns the content of a document node.
func docRoot(doc *yaml.Node) *yaml.Node {
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		return doc.Content[0]
	}
	return nil
}

// isNull reports whether n is a null scalar (an empty document, "~" or "null").
func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// yamlLineRe matches the line number that YAML errors start with.
var yamlLineRe = regexp.MustCompile(`^line (\d+): (.*)$`)

// yamlValueRe matches what YAML's messages quote of the file: a scalar that does not decode as
// its tag says (`value`) and the name of an anchor. Either may be a secret (to YAML, a password
// written *like-this is an alias): messages leave them out, the position says where.
var yamlValueRe = regexp.MustCompile("`[^`]*`|anchor '[^']*'")

// YAMLErrors turns an error of go.yaml.in/yaml/v3 reading data, the content of file, into
// located errors as [Load] reports them: at the line YAML names (its parser's off-by-one
// corrected), the column of that line's first non-blank character, and at the bracket of a
// flow collection that is not closed. Other files jetfold reads (test cases) use it.
func YAMLErrors(file string, data []byte, err error) []*diag.Error {
	return (&Config{File: file}).yamlErrors(data, err)
}

// yamlErrors turns a YAML parse or unmarshal error into *Errors. YAML reports lines but not
// columns; the column given is that of the first non-blank character of the line.
func (c *Config) yamlErrors(data []byte, err error) []*diag.Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	lines := []string{msg}
	if rest, ok := strings.CutPrefix(msg, "unmarshal errors:\n"); ok {
		lines = strings.Split(rest, "\n")
	}
	var errs []*diag.Error
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" {
			continue
		}
		line := 0
		if m := yamlLineRe.FindStringSubmatch(l); m != nil {
			line, _ = strconv.Atoi(m[1])
			l = m[2]
			if parserError(l) {
				// The YAML parser's errors give the 0-based line of their mark (its scanner's
				// are 1-based): one less than the line the problem is on.
				line++
			}
		}
		quoted := yamlValueRe.MatchString(l)
		l = yamlValueRe.ReplaceAllStringFunc(l, func(m string) string {
			if strings.HasPrefix(m, "anchor") {
				return "anchor"
			}
			return "value"
		})
		e := &diag.Error{
			Pos: diag.Pos{File: c.File, Line: max(line, 1), Col: firstCol(data, line)},
			Msg: "invalid YAML: " + l,
		}
		if quoted {
			e.Hint = "to YAML, a value that starts with * or & is an alias or an anchor, and one after a !! tag must be of that type: quote the value"
		}
		if open, ok := strings.CutPrefix(l, "did not find expected ',' or "); ok {
			// The line opens the flow collection that is not closed: point at its bracket.
			bracket, closing := byte('['), byte(']')
			if open == "'}'" {
				bracket, closing = '{', '}'
			}
			if at, col := unclosed(data, line, bracket, closing); col > 0 {
				e.Pos.Line, e.Pos.Col = at, col
				e.Msg = fmt.Sprintf("invalid YAML: this %c is not closed (%s)", bracket, l)
			}
			e.Hint = "close it on the same line, or, inside {...} or [...], quote an expression that holds , ? : # [ ] { }, such as {n: '(state.n ?? 0) + 1'}"
		}
		errs = append(errs, e)
	}
	return errs
}

// parserError tells whether msg is an error of the YAML parser (rather than of its scanner),
// whose line numbers are 0-based.
func parserError(msg string) bool {
	what, ok := strings.CutPrefix(msg, "did not find expected ")
	if !ok {
		return false
	}
	switch what {
	case "<document start>", "node content", "key", "'-' indicator", "',' or ']'", "',' or '}'":
		return true
	}
	return false
}

// unclosed finds the flow collection the parser reports not closed near line (1-based): on
// line itself or the line before (the parser's mark is on one or the other, depending on what
// follows), the last line that opens more of them than it closes. It returns the line and the
// 1-based column of the last opening bracket, or 0, 0.
func unclosed(data []byte, line int, opening, closing byte) (int, int) {
	lines := bytes.Split(data, []byte("\n"))
	for _, l := range []int{line, line - 1} {
		if l < 1 || l > len(lines) {
			continue
		}
		text := lines[l-1]
		if bytes.Count(text, []byte{opening}) > bytes.Count(text, []byte{closing}) {
			return l, bytes.LastIndexByte(text, opening) + 1
		}
	}
	return 0, 0
}

// firstCol returns the 1-based column of the first non-blank character of line (1-based) in
// data, or 1.
func firstCol(data []byte, line int) int {
	if line < 1 {
		return 1
	}
	for i := 1; i < line; i++ {
		j := bytes.IndexByte(data, '\n')
		if j < 0 {
			return 1
		}
		data = data[j+1:]
	}
	if j := bytes.IndexByte(data, '\n'); j >= 0 {
		data = data[:j]
	}
	n := len(data) - len(bytes.TrimLeft(data, " \t"))
	if n == len(data) {
		return 1
	}
	return n + 1
}

// operatorShapeError reports an operator item that is not a map.
func (c *Config) operatorShapeError(path string, v any) *diag.Error {
	e := c.Errorf(path, "invalid operator at %s: expected %s, got %s",
		diag.DisplayPath(path), wantName(operatorType), describe(v))
	e.Hint = `write "- name: config", such as "- filter: event.amount > 0"`
	return e
}

// durationHint says how to write a duration.
const durationHint = "use a number with a unit (ns, us, ms, s, m, h), such as 200ms, 30s or 1h30m"

// errNeedsUnit is returned by strictHook for a duration written as a bare number.
var errNeedsUnit = errors.New("a duration needs a unit")

// strictHook rejects what weak decoding would otherwise accept by surprise: a non-zero bare
// number or a boolean as a duration (200 would mean 200ns), a fractional number as an integer,
// a lone map or scalar as a list of structs or operators (it would become a list of one: only
// lists of strings get that convenience, for JETFOLD_STREAMS_0_SUBJECTS=a,b), and an operator
// item that is not a map (a list of maps would be merged into one).
func strictHook(from, to reflect.Type, data any) (any, error) {
	switch {
	case to == durationType:
		switch from.Kind() {
		case reflect.Bool:
			return nil, errNeedsUnit
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint,
			reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Float32, reflect.Float64:
			if !reflect.ValueOf(data).IsZero() {
				return nil, errNeedsUnit
			}
		}
	case to.Kind() >= reflect.Int && to.Kind() <= reflect.Uint64:
		if f, ok := data.(float64); ok && f != float64(int64(f)) {
			return nil, fmt.Errorf("%v is not an integer", f)
		}
	case to.Kind() == reflect.Slice && from.Kind() != reflect.Slice &&
		(to.Elem() == operatorType || to.Elem().Kind() == reflect.Struct),
		to == operatorType && from.Kind() != reflect.Map:
		return nil, fmt.Errorf("expected %s", wantName(to))
	}
	return data, nil
}

// decode unmarshals k into c with koanf, strictly (an unknown field is an error), weakly typed
// so that environment strings decode, and turns decoding errors into *Errors at the offending
// keys and values of raw, k's tree: the unknown fields, and the values that do not decode.
func (c *Config) decode(k *koanf.Koanf, raw map[string]any) (unknown, invalid []*diag.Error) {
	err := k.UnmarshalWithConf("", c, koanf.UnmarshalConf{DecoderConfig: &mapstructure.DecoderConfig{
		DecodeHook: mapstructure.ComposeDecodeHookFunc(
			strictHook,
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		),
		WeaklyTypedInput: true,
		ErrorUnused:      true,
		TagName:          "koanf",
		// File and IgnoredEnv have no tag: tagged koanf:"-", they would take a key "-".
		IgnoreUntaggedFields: true,
		MatchName:            func(key, field string) bool { return key == field },
	}})
	if err == nil {
		return nil, nil
	}
	for _, e := range leafErrors(err) {
		var de *mapstructure.DecodeError
		switch {
		case !errors.As(e, &de):
			invalid = append(invalid, c.Errorf("", "cannot decode the configuration: %v", e))
		case strings.HasPrefix(de.Unwrap().Error(), "has invalid keys: "):
			unknown = append(unknown, c.unknownFields(raw, de)...)
		default:
			invalid = append(invalid, c.decodeError(raw, de))
		}
	}
	return unknown, invalid
}

// leafErrors flattens the tree of joined and wrapped errors that mapstructure returns into
// its *DecodeErrors (and any other leaves).
func leafErrors(err error) []error {
	switch x := err.(type) {
	case *mapstructure.DecodeError:
		return []error{x}
	case interface{ Unwrap() []error }:
		var out []error
		for _, e := range x.Unwrap() {
			out = append(out, leafErrors(e)...)
		}
		return out
	case interface{ Unwrap() error }:
		if inner := x.Unwrap(); inner != nil {
			return leafErrors(inner)
		}
	}
	return []error{err}
}

// indexRe matches the list indices of mapstructure field names: pipelines[0].
var indexRe = regexp.MustCompile(`\[([^\]]*)\]`)

// fieldPath turns the name of a mapstructure error, such as pipelines[0].batch (config.Config
// for the top level), into a field path.
func fieldPath(de *mapstructure.DecodeError) string {
	path := strings.TrimPrefix(indexRe.ReplaceAllString(de.Name(), ".$1"), ".")
	if path == configType.String() {
		return ""
	}
	return path
}

// unknownFields reports, for mapstructure's ErrorUnused error de, each key of the map that
// names no field, at the key, with the field it may have meant. The keys are taken from the
// tree rather than from the error, whose message joins them with ", ".
func (c *Config) unknownFields(raw map[string]any, de *mapstructure.DecodeError) []*diag.Error {
	path := fieldPath(de)
	v, _ := rawAt(raw, path)
	m, ok := v.(map[string]any)
	t := typeAt(path)
	if !ok || t == nil || t.Kind() != reflect.Struct {
		return []*diag.Error{c.Errorf(path, "invalid value for %s: %v", diag.DisplayPath(path), de.Unwrap())}
	}
	where := "in " + diag.DisplayPath(path)
	if path == "" {
		where = "at the top level"
	}
	var errs []*diag.Error
	for _, k := range sortedKeys(m) {
		if _, ok := lookupField(t, k); !ok {
			p := diag.JoinPath(path, k)
			e := c.errorAt(c.KeyPos(p), p, fmt.Sprintf("unknown field %q %s", k, where))
			e.Hint = diag.HintFor(k, fieldNames(t), "valid fields")
			errs = append(errs, e)
		}
	}
	return errs
}

// decodeError turns a mapstructure error into a *diag.Error at the offending value.
func (c *Config) decodeError(raw map[string]any, de *mapstructure.DecodeError) *diag.Error {
	path := fieldPath(de)
	inner := de.Unwrap()
	t := typeAt(path)
	v, _ := rawAt(raw, path)
	where := diag.DisplayPath(path)
	var e *diag.Error
	switch {
	case t == nil:
		e = c.Errorf(path, "invalid value for %s: %v", where, inner)
	case t == operatorType:
		e = c.operatorShapeError(path, v)
	case t == durationType && isScalar(v):
		e = c.Errorf(path, "invalid duration %s for %s", quoteValue(v), where)
		e.Hint = durationHint
	case isScalar(v) && t.Kind() != reflect.Struct && t.Kind() != reflect.Slice && t.Kind() != reflect.Map:
		want := strings.TrimPrefix(strings.TrimPrefix(wantName(t), "an "), "a ")
		e = c.Errorf(path, "invalid %s %s for %s", want, quoteValue(v), where)
	default:
		e = c.Errorf(path, "invalid value for %s: expected %s, got %s", where, wantName(t), describe(v))
	}
	return e
}

// dropCovered drops the errors in errs at or under a path that already has an error in
// reported: a value that failed to decode is left at its zero value, which validation would
// report a second time.
func dropCovered(errs, reported []*diag.Error) []*diag.Error {
	return slices.DeleteFunc(errs, func(e *diag.Error) bool {
		for _, r := range reported {
			if e.Path == r.Path || strings.HasPrefix(e.Path, r.Path+".") {
				return true
			}
		}
		return false
	})
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
