package backup

// WithAfterCheckpoints returns o with f called once Write has read every checkpoint, before
// it reads any key.
func WithAfterCheckpoints(o Options, f func()) Options {
	o.afterCheckpoints = f
	return o
}

// WithoutBatchGets returns o reading every key alone from its stream's leader, as Write does
// on a replicated stream.
func WithoutBatchGets(o Options) Options {
	o.noBatch = true
	return o
}
