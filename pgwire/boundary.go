package pgwire

// BackendBoundary reports whether the server's bytes seen so far end on a
// message boundary, and the type of the last whole message (0 before the
// first). A relay that has written everything it showed the tracker may
// then add a message of its own (a FATAL notice) without breaking the
// client's framing.
func (t *Tracker) BackendBoundary() (atBoundary bool, lastType byte) {
	return !t.be.inBody && t.be.nhdr == 0, t.be.typ
}

// ClientTerminated reports whether the client's last message was Terminate:
// the server closing the connection then is the end the client asked for.
func (t *Tracker) ClientTerminated() bool { return t.fe.typ == feTerminate }
