package main

import (
	"log/slog"
	"sync"
	"time"

	"github.com/nplus1/nplus1/pgwire"
	"github.com/nplus1/nplus1/proxy"
	"github.com/nplus1/nplus1/replay/recording"
)

// recordOptions are the proxy's recording flags (--record).
type recordOptions struct {
	fs        *flagSet
	path      *string
	fileBytes *int
}

func newRecordOptions(fs *flagSet) *recordOptions {
	return &recordOptions{
		fs: fs,
		path: fs.String("record", "", "record what the proxy sees (connections, statements with their parameter\n"+
			"VALUES, timings, results) as JSON lines in `DIR_OR_FILE`, for nplus1 replay;\n"+
			"a recording holds the application's data: keep it like a database dump"),
		fileBytes: fs.Int("record-file-bytes", recording.DefaultMaxFileBytes, "start a new recording file when one reaches this size"),
	}
}

// recorder writes the executions the proxy emits to a recording, between
// the proxy's events queue and the analyzer.
type recorder struct {
	w       *recording.Writer
	logger  *slog.Logger
	started bool
}

// open starts the recording when --record is set (nil otherwise, and for
// a nil o: a command without the flag) and makes the proxy keep parameter
// values for it.
func (o *recordOptions) open(cfg *proxy.Config, logger *slog.Logger) (*recorder, error) {
	if o == nil || *o.path == "" {
		return nil, nil
	}
	if *o.fileBytes <= 0 {
		return nil, o.fs.errorf("record-file-bytes", "must be positive, got %d", *o.fileBytes)
	}
	w, err := recording.Create(*o.path, recording.WriterOptions{MaxFileBytes: int64(*o.fileBytes)})
	if err != nil {
		return nil, o.fs.errorf("record", "%v", err)
	}
	cfg.KeepParams = true
	logger = logger.With("component", "record")
	logger.Info("recording", "path", *o.path, "note", "the recording holds parameter values")
	return &recorder{w: w, logger: logger}, nil
}

// tee returns the channel the analyzer should read: with a recorder, a
// goroutine (owned by wg) writes each execution and forwards it, and
// closes the returned channel and the recording when events is closed.
// A slow disk slows the forwarding, so the proxy's queue fills and drops
// (and counts) events; the relay never waits. Without one it is events.
func (r *recorder) tee(events <-chan *pgwire.Execution, wg *sync.WaitGroup) <-chan *pgwire.Execution {
	if r == nil {
		return events
	}
	r.started = true
	out := make(chan *pgwire.Execution, cap(events))
	wg.Go(func() {
		defer close(out)
		flush := time.NewTicker(time.Second)
		defer flush.Stop()
		failed := false
		for {
			select {
			case e, ok := <-events:
				if !ok {
					r.close()
					return
				}
				if !failed {
					if err := r.w.Write(e); err != nil {
						failed = true
						r.logger.Error("recording stopped", "err", err)
					}
				}
				out <- e
			case <-flush.C:
				if !failed {
					if err := r.w.Flush(); err != nil {
						failed = true
						r.logger.Error("recording stopped", "err", err)
					}
				}
			}
		}
	})
	return out
}

// abandon closes a recording whose tee never started (the proxy failed to
// start).
func (r *recorder) abandon() {
	if r != nil && !r.started {
		r.close()
	}
}

func (r *recorder) close() {
	st := r.w.Stats()
	if err := r.w.Close(); err != nil {
		r.logger.Error("close recording", "err", err)
	}
	r.logger.Info("recording closed", "files", st.Files, "executions", st.Executions, "bytes", st.Bytes)
}
