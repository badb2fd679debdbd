package config

import (
	"fmt"
	"strconv"

	"github.com/jetfold/jetfold/config/diag"
	"go.yaml.in/yaml/v3"
)

// Pos returns the place in the file of the value at path, a field path with dots and list
// indices such as "pipelines.0.operators.2.fold.on.order-placed.items". When path itself is
// unknown (a field left out of the file, or set from the environment) it returns the place of
// the nearest enclosing path that is known. File is always set; Line and Col are zero only for
// a configuration that was not loaded from a file.
func (c *Config) Pos(path string) diag.Pos {
	for p := path; ; p = diag.ParentPath(p) {
		if pos, ok := c.pos[p]; ok {
			return pos
		}
		if p == "" {
			break
		}
	}
	return c.fallbackPos()
}

// KeyPos returns the place in the file of the key of path, such as the "bach" of "bach: 5",
// falling back to [Config.Pos] when the key is unknown (list items have no key).
func (c *Config) KeyPos(path string) diag.Pos {
	if pos, ok := c.keyPos[path]; ok {
		return pos
	}
	return c.Pos(path)
}

// Errorf returns a [*diag.Error] at the place of path (see [Config.Pos]) whose message is
// formatted from format and args. When the value at path (or an enclosing one) came from an
// environment variable, the message names the variable. Set Hint on the result to add a hint.
func (c *Config) Errorf(path, format string, args ...any) *diag.Error {
	return c.errorAt(c.Pos(path), path, fmt.Sprintf(format, args...))
}

// errorAt returns a *diag.Error at pos, naming the environment variable that set path, if any.
func (c *Config) errorAt(pos diag.Pos, path, msg string) *diag.Error {
	if v, ok := c.envFor(path); ok {
		msg += " (from " + v + ")"
	}
	return &diag.Error{Pos: pos, Path: path, Msg: msg}
}

// envFor returns the environment variable that set path or an enclosing path.
func (c *Config) envFor(path string) (string, bool) {
	for p := path; p != ""; p = diag.ParentPath(p) {
		if v, ok := c.env[p]; ok {
			return v, true
		}
	}
	return "", false
}

// fallbackPos is the position used when no path is known: the first line of a loaded file.
func (c *Config) fallbackPos() diag.Pos {
	if c.loaded {
		return diag.Pos{File: c.File, Line: 1, Col: 1}
	}
	return diag.Pos{File: c.File}
}

// indexPositions records the place of every value and key in the tree under n. Aliases are not
// followed: paths under an alias resolve to the alias itself, which also keeps a document full
// of aliases from costing more than its size. Merge keys ("<<") are skipped the same way.
func (c *Config) indexPositions(n *yaml.Node, path string) {
	if n == nil {
		return
	}
	c.pos[path] = c.nodePos(n)
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
				continue
			}
			p := diag.JoinPath(path, k.Value)
			c.keyPos[p] = c.nodePos(k)
			c.indexPositions(v, p)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			c.indexPositions(item, diag.JoinPath(path, strconv.Itoa(i)))
		}
	}
}

// nodePos is the place of n in the file.
func (c *Config) nodePos(n *yaml.Node) diag.Pos {
	return diag.Pos{File: c.File, Line: max(n.Line, 1), Col: max(n.Column, 1)}
}
