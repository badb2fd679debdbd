// Package diag reports problems in jetfold's configuration file at their place: file:line:col
// messages with hints and did-you-mean suggestions.
//
// An [*Error] is one problem, at a [Pos] in the file and a field path: the keys and list
// indices that lead to the value, joined with dots (pipelines.0.batch.size, built with
// [JoinPath] and shown in messages as pipelines[0].batch.size by [DisplayPath]). It prints as
//
//	file:line:col: message (hint: ...)
//
// and wraps [ErrInvalid], so that a caller can tell a rejected configuration from, say, a file
// that cannot be read. [Join] and [JoinSorted] turn many into one report in file order;
// [Suggest] and [HintFor] find the name a misspelt one may be.
//
// Package config builds these errors with the positions it records while loading; other
// packages build them through its Config.Errorf, so that their messages point at the same
// places.
package diag
