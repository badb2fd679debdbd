package pipeline

import (
	"github.com/jetfold/jetfold/config"
)

// Definitions returns the definitions of the projections p writes, as the checkpoint keeps
// them (checkpoint.Checkpoint.Definitions).
func (p *Pipeline) Definitions() map[string]string { return p.defs }

// DefinitionChanges describes, one line per projection, how the definitions cur differ from
// old (nil: the same, or old kept none).
func DefinitionChanges(old, cur map[string]string) []string {
	var out []string
	for _, c := range changedDefinitions(old, cur) {
		out = append(out, c.projection+": "+c.what)
	}
	return out
}

// ForRebuild returns a copy of p as a rebuild runs it: from start, up to the end of the
// stream (or Options.StopAt), its watermark moved by events only, never by the wall clock.
// The copy shares p's operators, which hold state of their own while they run: give a rebuild
// a Pipeline built for it, not one a runner of the process uses.
func (p *Pipeline) ForRebuild(start config.StartPos) *Pipeline {
	q := *p
	q.Start = start
	q.Config.Source.Stop = "end"
	q.Config.Idle = 0
	return &q
}
