package consumer

import (
	"runtime"
	"syscall"
)

// bulkNice is the nice value of the OS threads that bulk lanes run on.
// Searches and bulk work of one allocation run on lanes of their own, so
// on a saturated machine they compete for the same cores; at nice 10 the
// kernel gives a bulk thread about a tenth of a core that a search wants,
// and the whole core when no search does. ONNX Runtime runs a
// single-threaded allocation's work on the calling thread, so its share
// follows; the pool threads of a multi-threaded allocation are ORT's own
// and keep the process's priority.
const bulkNice = 10

// lowerPriority puts the calling goroutine on an OS thread of its own at
// bulkNice for the rest of its life: an unprivileged process cannot raise
// a thread's priority again, so the thread is never unlocked, and Go ends
// it with the goroutine. It returns the error of setpriority, after which
// the goroutine runs as before, at the process's priority.
func lowerPriority() error {
	runtime.LockOSThread()
	return syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), bulkNice)
}
