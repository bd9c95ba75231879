package proxy

import "syscall"

// errTooManyFiles is what Accept returns when the process is out of file
// descriptors: a reason to back off, not to stop serving.
var errTooManyFiles = syscall.EMFILE
