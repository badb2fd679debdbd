// Package config loads, checks and describes jetfold's YAML configuration file.
//
// [Load] reads one file into a fresh koanf instance, layers the JETFOLD_ environment overrides
// over it, decodes it strictly (unknown fields, wrong types and bad durations are errors),
// applies the defaults documented on each field and runs [Config.Validate]. Every problem found is reported
// at once, joined with [errors.Join], each as a [*diag.Error] that prints as
//
//	file:line:col: message (hint: ...)
//
// and wraps [diag.ErrInvalid]; package diag holds these errors, their positions and the
// did-you-mean hints. Other packages that check parts of the configuration that this one
// keeps raw (expressions, operator specs) report through [Config.Errorf] and [Config.Pos], so
// their messages point at the same file positions, and join their errors with Load's with
// [diag.Join].
//
// # Environment overrides
//
// Only variables whose names start with JETFOLD_ override the file. A field path such as
// nats.embedded.store_dir or pipelines.0.batch.size becomes a variable name by upper-casing
// it, replacing "." with "_" and prefixing JETFOLD_: JETFOLD_NATS_EMBEDDED_STORE_DIR,
// JETFOLD_PIPELINES_0_BATCH_SIZE. The paths considered are every field of the configuration
// structs (under every list item present in the file) plus every path present in the file
// inside operators. Values are strings, decoded like the file's (so "10" is an integer,
// "1s" a duration and "a,b" a list). A variable that matches no path is an error, as an
// unknown field in the file is, and is listed in [Config.IgnoredEnv]; the variables of
// [OtherEnv] are jetfold's own and set no field.
//
// Relative paths in the file are not resolved: they resolve against the working directory
// when used.
package config
