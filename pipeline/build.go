package pipeline

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/jetfold/jetfold/checkpoint"
	"github.com/jetfold/jetfold/config"
	"github.com/jetfold/jetfold/config/diag"
	"github.com/jetfold/jetfold/operators"
	"github.com/jetfold/jetfold/operators/event"
	"github.com/jetfold/jetfold/operators/expr"
	"github.com/jetfold/jetfold/pipeline/control"
	"github.com/jetfold/jetfold/streams"
)

// Pipeline is a compiled pipeline: its configuration, its expressions and its operators.
// It is built by [Build] and does not change while it runs.
type Pipeline struct {
	// Name is the pipeline's name.
	Name string
	// Config is the pipeline's configuration with defaults applied.
	Config config.Pipeline
	// Start is the parsed source.start.
	Start config.StartPos
	// Projections are the projections the pipeline's folds write, in order.
	Projections []string

	typeExpr, keyExpr, timeExpr *expr.Expr
	ops                         []operators.Operator
	// layout is the slot order of the event fields that the expressions read, all bound to
	// it; nil when one uses the event as a whole (or an operator is opaque): the event is then
	// decoded whole, into a map.
	layout *event.Layout
	// prefetch are the projections whose folds use the pipeline's key (those before any
	// `key` operator): their keys can be computed, and read ahead, before processing.
	prefetch []string
	// lookahead are the lookups before any `key` operator, whose keys prefetch computes too
	// (see operators.KeyReader).
	lookahead []keyRead
	// peekLayout and peekFields are what prefetch decodes to run the type and key
	// expressions: the fields they read, in layout's slots (or in a layout of their own when
	// the pipeline has none; peekLayout nil: every field).
	peekLayout *event.Layout
	peekFields []string
	// shapes are the shapes of the projections' records, those of their first folds.
	shapes map[string]*event.Shape
	// inPlace lets folds change a key's state in place (see event.Entry.Owned): every
	// operator is one of ours, so nothing holds a record while a fold changes it (an
	// expression that uses `state` whole gets a copy).
	inPlace bool
	// clocks are the operators that act on event time; ttl marks the projections whose
	// writes may carry a TTL.
	clocks []operators.Clock
	ttl    map[string]bool
	// starters are the operators to start at every start of a run.
	starters []operators.Starter
	// rawOps are the configurations of ops, in order; defs the definitions of the
	// projections, kept with the checkpoint (see definitions).
	rawOps []config.Operator
	defs   map[string]string
	// Warnings are what is legal but likely a mistake, each at its place in the file (a
	// lookup of a projection that no pipeline writes).
	Warnings []*diag.Error

	// cfg, reg and index are what Build made the pipeline of: [Pipeline.Instance] builds it
	// again from them.
	cfg   *config.Config
	reg   *operators.Registry
	index int
}

// Instance returns the pipeline built anew from the configuration [Build] built it from, with
// operators of its own: the operators of windows, timeouts and folds keep indexes and buffers
// for the one runner that runs them, so each partition of a partitioned pipeline runs an
// instance of its own ([RunAll], a rebuild's replay, [Replay]).
func (p *Pipeline) Instance() (*Pipeline, error) {
	if p.cfg == nil {
		return nil, fmt.Errorf("pipeline %s: not made by Build, cannot be built again", p.Name)
	}
	ps, err := Build(p.cfg, p.reg)
	if err != nil {
		return nil, fmt.Errorf("pipeline %s: build again: %w", p.Name, err)
	}
	return ps[p.index], nil
}

// Build compiles every pipeline of cfg with the operators of reg. It reports every problem at
// once, each as a *diag.Error at its place in the file: an expression that does not compile,
// an unknown operator, two pipelines writing one projection.
func Build(cfg *config.Config, reg *operators.Registry) ([]*Pipeline, error) {
	var errs []error
	var out []*Pipeline
	writers := map[string]string{} // projection -> pipeline
	type read struct {
		p          *Pipeline
		path, proj string
	}
	var reads []read // projections operators read (operators.Reader)
	for i, pc := range cfg.Pipelines {
		base := fmt.Sprintf("pipelines.%d", i)
		p := &Pipeline{Name: pc.Name, Config: pc, shapes: map[string]*event.Shape{}, ttl: map[string]bool{}, cfg: cfg, reg: reg, index: i}
		p.Start, _ = pc.Source.StartPosition() // config.Validate reports a bad one
		compile := func(field, src string, kind int) *expr.Expr {
			e, err := expr.Compile(src, kind)
			if err != nil {
				errs = append(errs, cfg.Errorf(base+"."+field, "%v", unwrapField(err)))
			}
			return e
		}
		typeSrc := pc.Type
		if pc.Decode == "cloudevents" && typeSrc == config.DefaultType {
			typeSrc = `headers["ce-type"]` // a CloudEvent's type is an attribute, not a data field
		}
		p.typeExpr = compile("type", typeSrc, expr.AnyResult)
		p.keyExpr = compile("key", pc.Key, expr.AnyResult)
		if pc.Time != "" {
			p.timeExpr = compile("time", pc.Time, expr.AnyResult)
		}
		rekeyed := false     // a key operator came before
		var opPaths []string // of p.ops
		var vars []string    // set by the operators so far (operators.Binder)
		type writer struct {
			proj, prefix, path string
			claims             bool // an operators.Claimer: prefix is its own
		}
		var wrote []writer // the projections the operators so far write
		for j, raw := range pc.Operators {
			opPath := fmt.Sprintf("%s.operators.%d", base, j)
			name, val, ok := single(raw)
			if !ok {
				continue // config.Validate reports it
			}
			spec, ok := reg.Lookup(name)
			if !ok {
				e := cfg.Errorf(opPath, "unknown operator %q", name)
				e.Hint = "operators: " + strings.Join(reg.Names(), ", ")
				errs = append(errs, e)
				continue
			}
			op, err := spec.Build(operators.BuildContext{Pipeline: pc.Name, Vars: slices.Clone(vars)}, val)
			if err != nil {
				errs = append(errs, fieldErrors(cfg, opPath+"."+name, err)...)
				continue
			}
			if name == "key" {
				rekeyed = true
			}
			if kr, ok := op.(operators.KeyReader); ok && !rekeyed {
				proj, key := kr.ReadsKey()
				p.lookahead = append(p.lookahead, keyRead{proj, key})
			}
			if pr, ok := op.(operators.Projector); ok {
				proj := pr.Projection()
				// Only a fold's keys are the event's key, which read-ahead computes.
				if _, fold := op.(operators.StateFieldsAssigned); fold && !rekeyed && !slices.Contains(p.prefetch, proj) {
					p.prefetch = append(p.prefetch, proj)
				}
				path := opPath + "." + name + ".projection"
				switch {
				case proj == streams.CheckpointBucket || proj == streams.HealthBucket || proj == checkpoint.LeaseBucket || proj == control.Bucket:
					errs = append(errs, cfg.Errorf(path, "projection %q is reserved for jetfold's own use", proj))
				case checkpoint.IsVersionName(proj):
					e := cfg.Errorf(path, "projection %q: names ending in _v<N> are the buckets of rebuilt versions", proj)
					e.Hint = "rename it (" + strings.ReplaceAll(proj, "_v", "_ver") + ", for one)"
					errs = append(errs, e)
				case writers[proj] != "" && writers[proj] != pc.Name:
					errs = append(errs, cfg.Errorf(path, "projection %q is already written by pipeline %q: one projection, one writer", proj, writers[proj]))
				default:
					writers[proj] = pc.Name
					if !slices.Contains(p.Projections, proj) {
						p.Projections = append(p.Projections, proj)
					}
				}
			}
			if pr, ok := op.(operators.Projector); ok {
				w := writer{proj: pr.Projection(), path: opPath + "." + name}
				if c, ok := op.(operators.Claimer); ok {
					w.proj, w.prefix = c.Claims()
					w.claims = true
				}
				for _, o := range wrote {
					if o.proj == w.proj && (o.claims || w.claims) &&
						(!o.claims || !w.claims || strings.HasPrefix(o.prefix, w.prefix) || strings.HasPrefix(w.prefix, o.prefix)) {
						e := cfg.Errorf(w.path, "projection %q: this operator and the one at %s write the same keys", w.proj, cfg.Pos(o.path))
						e.Hint = "a window, a timeout (by name) or a dedupe needs its keys to itself: give it a projection of its own, or the timeouts different names"
						errs = append(errs, e)
						break
					}
				}
				wrote = append(wrote, w)
			}
			p.ops = append(p.ops, op)
			p.rawOps = append(p.rawOps, raw)
			opPaths = append(opPaths, opPath+"."+name)
			if c, ok := op.(operators.Clock); ok {
				p.clocks = append(p.clocks, c)
			}
			if st, ok := op.(operators.Starter); ok {
				p.starters = append(p.starters, st)
			}
			if b, ok := op.(operators.Binder); ok {
				vars = append(vars, b.Binds()...)
			}
			if rd, ok := op.(operators.Reader); ok {
				for _, proj := range rd.Reads() {
					reads = append(reads, read{p, opPath + "." + name + ".projection", proj})
				}
			}
			if t, ok := op.(operators.TTLProjector); ok && t.UsesTTL() {
				p.ttl[t.Projection()] = true
			}
		}
		p.shareShapes()
		for _, err := range p.checkState(opPaths) {
			errs = append(errs, fieldErrors(cfg, err.path, err.err)...)
		}
		exprs := []*expr.Expr{p.typeExpr, p.keyExpr, p.timeExpr}
		opaque := false // an operator we cannot see into
		for _, op := range p.ops {
			if ex, ok := op.(operators.Expressioner); ok {
				exprs = append(exprs, ex.Exprs()...)
			} else {
				opaque = true
			}
		}
		if fields, all := expr.EventFields(exprs...); !all && !opaque {
			p.layout = event.NewLayout(fields)
			expr.BindLayout(p.layout, exprs...)
		}
		peekExprs := []*expr.Expr{p.typeExpr, p.keyExpr}
		for _, kr := range p.lookahead {
			peekExprs = append(peekExprs, kr.key)
		}
		peek, peekAll := expr.EventFields(peekExprs...)
		switch {
		case p.layout != nil:
			// Not nil, which would convert every field: the key may read none.
			p.peekLayout, p.peekFields = p.layout, append([]string{}, peek...)
		case !peekAll:
			// Unbound expressions find their fields by name in the slots.
			p.peekLayout = event.NewLayout(peek)
		}
		p.inPlace = !opaque
		p.defs = p.definitions()
		out = append(out, p)
	}
	for _, rd := range reads {
		if writers[rd.proj] == "" {
			w := cfg.Errorf(rd.path, "warning: no pipeline of this file writes projection %q: the lookup reads what another process writes there, or nothing", rd.proj)
			w.Hint = diag.HintFor(rd.proj, slices.Sorted(maps.Keys(writers)), "projections written here")
			rd.p.Warnings = append(rd.p.Warnings, w)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// shareShapes gives the operators that write one projection one shape, with the fields of
// them all, so that each changes the records of the others in place; loaded states take it
// too.
func (p *Pipeline) shareShapes() {
	fields := map[string][]string{}
	for _, op := range p.ops {
		if pr, ok := op.(operators.Projector); ok {
			fields[pr.Projection()] = append(fields[pr.Projection()], pr.StateFields()...)
		}
	}
	for proj, names := range fields {
		p.shapes[proj] = event.NewShape(names...)
	}
	for _, op := range p.ops {
		if pr, ok := op.(operators.Projector); ok {
			pr.UseShape(p.shapes[pr.Projection()])
		}
	}
}

// stateErr is a problem of an operator's expressions over state, at the operator's path.
type stateErr struct {
	path string
	err  error
}

// checkState type-checks the expressions that read `state` against the state they see: that
// of the projection of the last fold before them (the fields of its folds' `initial` and those
// their handlers assign, typed by `initial`). An operator before any fold is not checked.
// paths are the operators' places in the configuration.
func (p *Pipeline) checkState(paths []string) []stateErr {
	fields := map[string]map[string]reflect.Type{}
	for _, op := range p.ops {
		a, ok := op.(operators.StateFieldsAssigned)
		if !ok {
			continue
		}
		f := fields[a.Projection()]
		if f == nil {
			f = map[string]reflect.Type{}
			fields[a.Projection()] = f
		}
		for name, t := range a.InitialTypes() {
			if _, seen := f[name]; !seen || f[name] == nil {
				f[name] = t
			}
		}
		for _, name := range a.Assigned() {
			if _, seen := f[name]; !seen {
				f[name] = nil
			}
		}
	}
	types := map[string]*expr.StateType{}
	for proj, f := range fields {
		types[proj] = expr.NewStateType(proj, f)
	}
	var out []stateErr
	var cur *expr.StateType
	for j, op := range p.ops {
		if pr, ok := op.(operators.Projector); ok {
			cur = types[pr.Projection()]
		}
		sc, ok := op.(operators.StateChecker)
		if !ok || cur == nil {
			continue
		}
		if err := sc.CheckState(cur); err != nil {
			out = append(out, stateErr{path: paths[j], err: err})
		}
	}
	return out
}

// fieldErrors maps an operator's *expr.FieldError values to config errors.
func fieldErrors(cfg *config.Config, base string, err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, fieldErrors(cfg, base, e)...)
		}
		return out
	}
	var fe *expr.FieldError
	if errors.As(err, &fe) {
		path := base
		if fe.Field != "" {
			path += "." + fe.Field
		}
		e := cfg.Errorf(path, "%v", fe.Err)
		var uf *expr.UnknownStateFieldError
		if errors.As(fe.Err, &uf) {
			e.Hint = diag.HintFor(uf.Field, uf.Fields, "state's fields (initial, and what the handlers assign)")
		}
		return []error{e}
	}
	return []error{cfg.Errorf(base, "%v", err)}
}

func unwrapField(err error) error {
	var fe *expr.FieldError
	if errors.As(err, &fe) {
		return fe.Err
	}
	return err
}

// single returns the one key of an operator item.
func single(op config.Operator) (string, any, bool) {
	if len(op) != 1 {
		return "", nil, false
	}
	for k, v := range op {
		return k, v, true
	}
	return "", nil, false
}
