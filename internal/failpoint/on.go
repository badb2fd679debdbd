//go:build failpoints

package failpoint

import (
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Failpoints, compiled in only with -tags failpoints (the crash tests build the processor
// so): JETFOLD_FAILPOINTS lists points (of the commit, of a rebuild) where the process SIGKILLs itself with
// probability JETFOLD_FAILPOINT_P, so that crashes land inside the commit protocol, not only
// where an outside kill happens to fall.
var (
	failpoints = strings.Split(os.Getenv("JETFOLD_FAILPOINTS"), ",")
	failP, _   = strconv.ParseFloat(os.Getenv("JETFOLD_FAILPOINT_P"), 64)
)

// Hit kills the process at point name when JETFOLD_FAILPOINTS lists it (with probability
// JETFOLD_FAILPOINT_P), calling before first when it is set.
func Hit(name string, before ...func()) {
	for _, f := range failpoints {
		if f == name && rand.Float64() < failP {
			for _, b := range before {
				b()
			}
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
}
