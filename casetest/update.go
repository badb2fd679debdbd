package casetest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Update rewrites the expect section of each case of f that has a result in results and ran
// (no Err), so that it states what the pipelines did: every projection that holds a key or
// that the case named (values without their "_" members), every derived event (type only
// when it is not the subject), and every dead letter, grouped by subject and reason (and
// pipeline, when the configuration has several) with their count. A case without expect
// gets one, after its last field. The rest of the file is kept byte for byte, comments
// included; comments inside a rewritten expect are lost. It returns how many cases it
// rewrote. Afterwards f no longer matches its file: load it again to run it.
//
// A case written in flow style ({name: ..., events: ...}), reached through an alias, or
// whose expect comes from a merge key or holds an anchor used elsewhere is not rewritten:
// Update returns an error for it, and writes nothing.
func (e *Engine) Update(f *File, results []Result) (int, error) {
	lines := strings.SplitAfter(string(f.data), "\n")
	if n := len(lines); n > 0 && lines[n-1] == "" {
		lines = lines[:n-1]
	}
	eol := "\n"
	if bytes.Contains(f.data, []byte("\r\n")) {
		eol = "\r\n"
	}
	var nodes []*yaml.Node
	preorder(f.doc, &nodes)
	index := map[*yaml.Node]int{}
	for i, n := range nodes {
		index[n] = i
	}
	type edit struct {
		from, to int // 0-based lines [from, to) replaced
		text     []string
	}
	var edits []edit
	var errs []string
	for _, r := range results {
		c := r.Case
		if c.File != f || r.Err != nil {
			continue
		}
		m := c.item
		if m.Kind != yaml.MappingNode || m.Style&yaml.FlowStyle != 0 {
			errs = append(errs, fmt.Sprintf("%s: case %q: --update rewrites cases written in block style only", c.Pos, c.Name))
			continue
		}
		render := e.renderExpect(c, r.Actual)
		if c.expectKey == nil {
			// After the case's last field: before the next node, less the blank and comment
			// lines that lead to it.
			end, last := subtreeEnd(nodes, index, m)
			at := lineBefore(lines, end, nodes, last, m.Column-1)
			edits = append(edits, edit{from: at, to: at, text: indent(render, m.Column-1, "", eol)})
			continue
		}
		k := slices.Index(m.Content, c.expectKey)
		if k < 0 || k%2 != 0 {
			errs = append(errs, fmt.Sprintf("%s: case %q: its expect comes from a merge (<<): write it in the case to --update it", c.Pos, c.Name))
			continue
		}
		v := m.Content[k+1]
		end, last := subtreeEnd(nodes, index, v)
		if end < len(nodes) && nodes[end].Line <= last {
			errs = append(errs, fmt.Sprintf("%s: case %q: its expect shares a line with what follows it", c.Pos, c.Name))
			continue
		}
		if used := anchorsUsedOutside(nodes, index[c.expectKey], end); used != "" {
			errs = append(errs, fmt.Sprintf("%s: case %q: its expect defines the anchor &%s, used elsewhere", c.Pos, c.Name, used))
			continue
		}
		from := c.expectKey.Line - 1
		to := lineBefore(lines, end, nodes, last, c.expectKey.Column-1)
		prefix := string([]rune(strings.TrimRight(lines[from], "\r\n"))[:c.expectKey.Column-1])
		edits = append(edits, edit{from: from, to: to, text: indent(render, c.expectKey.Column-1, prefix, eol)})
	}
	if len(errs) > 0 {
		return 0, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	if len(edits) == 0 {
		return 0, nil
	}
	slices.SortFunc(edits, func(a, b edit) int { return b.from - a.from }) // bottom up
	for _, ed := range edits {
		if ed.from == len(lines) && len(lines) > 0 && !strings.HasSuffix(lines[len(lines)-1], "\n") {
			lines[len(lines)-1] += eol
		}
		lines = slices.Replace(lines, ed.from, ed.to, ed.text...)
	}
	return len(edits), writeFile(f.Path, []byte(strings.Join(lines, "")))
}

// preorder appends n and the nodes under it in document order (not through aliases).
func preorder(n *yaml.Node, out *[]*yaml.Node) {
	*out = append(*out, n)
	if n.Kind == yaml.AliasNode {
		return
	}
	for _, c := range n.Content {
		preorder(c, out)
	}
}

// subtreeEnd returns the index in nodes of the first node after n's subtree, and the last
// line any node of the subtree starts on.
func subtreeEnd(nodes []*yaml.Node, index map[*yaml.Node]int, n *yaml.Node) (int, int) {
	var sub []*yaml.Node
	preorder(n, &sub)
	last := 0
	for _, s := range sub {
		last = max(last, s.Line)
	}
	return index[n] + len(sub), last
}

// lineBefore returns the 0-based line where the region that ends before nodes[end] ends:
// the line of nodes[end] (or the end of the file), less the blank lines and the comment
// lines indented by at most indent just before it (they lead to what follows; a comment
// indented more belongs to the region), but not before line last (1-based), where the
// region's last node starts.
func lineBefore(lines []string, end int, nodes []*yaml.Node, last, indent int) int {
	to := len(lines)
	if end < len(nodes) {
		to = nodes[end].Line - 1
	}
	for to > last {
		l := strings.TrimRight(lines[to-1], "\r\n")
		t := strings.TrimLeft(l, " \t")
		if t != "" && (!strings.HasPrefix(t, "#") || len(l)-len(t) > indent) {
			break
		}
		to--
	}
	return to
}

// anchorsUsedOutside returns the name of an anchor defined by nodes[from:to] that an alias
// elsewhere uses, or "".
func anchorsUsedOutside(nodes []*yaml.Node, from, to int) string {
	inside := map[*yaml.Node]bool{}
	for _, n := range nodes[from:to] {
		if n.Anchor != "" {
			inside[n] = true
		}
	}
	for i, n := range nodes {
		if (i < from || i >= to) && n.Kind == yaml.AliasNode && inside[n.Alias] {
			return n.Alias.Anchor
		}
	}
	return ""
}

// indent returns the lines of render, the first after prefix and the others indented by
// col spaces, each ending with eol.
func indent(render []string, col int, prefix, eol string) []string {
	out := make([]string, len(render))
	pad := strings.Repeat(" ", col)
	for i, l := range render {
		if i == 0 && prefix != "" {
			out[i] = prefix + l + eol
			continue
		}
		out[i] = pad + l + eol
	}
	return out
}

// renderExpect writes the expect section that states a, for case c.
func (e *Engine) renderExpect(c *Case, a Actual) []string {
	out := []string{"expect:"}
	named := map[string]bool{}
	for _, p := range c.Expect.Projections {
		named[p.Name] = true
	}
	var projs []string
	for _, p := range a.Projections {
		switch {
		case len(p.Keys) == 0 && named[p.Name]:
			projs = append(projs, "    "+yamlScalar(p.Name)+": {}")
		case len(p.Keys) > 0:
			projs = append(projs, "    "+yamlScalar(p.Name)+":")
			for _, kv := range p.Keys {
				v := withoutHidden(jsonOrString(kv.Value), nil)
				projs = append(projs, "      "+yamlScalar(kv.Key)+": "+yamlFlow(v))
			}
		}
	}
	if len(projs) > 0 {
		out = append(out, "  projections:")
		out = append(out, projs...)
	}
	if len(a.Derived) == 0 {
		out = append(out, "  derived: []")
	} else {
		out = append(out, "  derived:")
		for _, d := range a.Derived {
			out = append(out, "    - subject: "+yamlScalar(d.Subject))
			if d.Type != "" && d.Type != d.Subject {
				out = append(out, "      type: "+yamlScalar(d.Type))
			}
			out = append(out, "      data: "+yamlFlow(jsonOrString(d.Data)))
		}
	}
	type group struct {
		d DeadLetter
		n int
	}
	var groups []*group
	for _, d := range a.DeadLetters {
		if len(e.pipelines) < 2 {
			d.Pipeline = ""
		}
		i := slices.IndexFunc(groups, func(g *group) bool { return g.d == d })
		if i < 0 {
			groups = append(groups, &group{d: d})
			i = len(groups) - 1
		}
		groups[i].n++
	}
	if len(groups) == 0 {
		out = append(out, "  dead_letters: []")
	} else {
		out = append(out, "  dead_letters:")
		for _, g := range groups {
			var parts []string
			if g.d.Pipeline != "" {
				parts = append(parts, "pipeline: "+yamlScalar(g.d.Pipeline))
			}
			if g.d.Subject != "" {
				parts = append(parts, "subject: "+yamlScalar(g.d.Subject))
			}
			parts = append(parts, "reason: "+quote(g.d.Reason), fmt.Sprintf("count: %d", g.n))
			out = append(out, "    - {"+strings.Join(parts, ", ")+"}")
		}
	}
	return out
}

// writeFile replaces the file at path with data, through a temporary file in its directory,
// keeping its permissions.
func writeFile(path string, data []byte) error {
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after the rename, there is nothing left to remove
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(info.Mode().Perm()); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
