package analyzer

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nplus1/nplus1/detector"
	"github.com/nplus1/nplus1/pgwire"
)

// slowTee forwards in to the returned channel a millisecond per execution,
// as the recording tee may: the analyzer's channel lags the proxy's.
func slowTee(in <-chan *pgwire.Execution) <-chan *pgwire.Execution {
	out := make(chan *pgwire.Execution, cap(in))
	go func() {
		defer close(out)
		for e := range in {
			time.Sleep(time.Millisecond)
			out <- e
		}
	}()
	return out
}

// TestFlushWhereIsABarrier: FlushWhere waits for every execution handed
// before it, through a slow tee, then closes the windows of one application
// only; the other's stays open until its own flush.
func TestFlushWhereIsABarrier(t *testing.T) {
	store := NewStore(0)
	a := New(Config{Sinks: []Sink{store}, Tick: 5 * time.Millisecond, Lag: time.Hour})
	in := make(chan *pgwire.Execution, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { a.Run(ctx, slowTee(in)); close(ran) }()

	handed := uint64(0)
	start := time.Now()
	for id, app := range []string{"worker-a", "worker-b"} {
		conn := &pgwire.ConnInfo{ID: uint64(id + 1), User: "app", Database: "shop", ApplicationName: app}
		for _, e := range loop(conn, start, 8) {
			in <- e
			handed++
		}
	}
	fctx, fcancel := context.WithTimeout(ctx, 10*time.Second)
	defer fcancel()
	res, err := a.FlushWhere(fctx, handed, Filter{Application: "worker-a"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Executions != handed || res.WindowsClosed != 1 || res.Findings != 1 {
		t.Errorf("flush of worker-a: %+v, want %d executions, 1 window, 1 finding", res, handed)
	}
	if got := store.ListWhere(Filter{Kind: detector.KindNPlusOne}); len(got) != 1 || got[0].Connection.ApplicationName != "worker-a" {
		t.Fatalf("after the flush of worker-a: %+v, want worker-a's N+1 alone", got)
	}
	if open := a.Stats().WindowsOpen; open != 1 {
		t.Errorf("%d windows open, want worker-b's", open)
	}

	res, err = a.FlushWhere(fctx, handed, Filter{Application: "worker-b"})
	if err != nil || res.WindowsClosed != 1 || res.Findings != 1 {
		t.Errorf("flush of worker-b: %+v, %v", res, err)
	}
	if got := store.ListWhere(Filter{Application: "worker-b"}); len(got) != 1 {
		t.Errorf("worker-b's findings: %+v", got)
	}

	// A count never reached: the caller's deadline, and Run goes on.
	short, scancel := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = a.FlushWhere(short, handed+1, Filter{})
	scancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("flush waiting for an execution never sent: %v, want the deadline", err)
	}
	if _, err := a.FlushWhere(fctx, handed, Filter{}); err != nil {
		t.Errorf("flush after a timed-out one: %v", err)
	}

	cancel()
	<-ran
	if _, err := a.FlushWhere(context.Background(), 0, Filter{}); !errors.Is(err, ErrStopped) {
		t.Errorf("flush after Run returned: %v, want ErrStopped", err)
	}
	close(in)
}

// TestFlushWhereWhenEventsClose: a flush waiting for executions when the
// channel closes gets ErrStopped, and Run flushes every window.
func TestFlushWhereWhenEventsClose(t *testing.T) {
	store := NewStore(0)
	a := New(Config{Sinks: []Sink{store}, Tick: 5 * time.Millisecond, Lag: time.Hour})
	events := make(chan *pgwire.Execution, 100)
	ran := make(chan struct{})
	go func() { a.Run(context.Background(), events); close(ran) }()
	conn := &pgwire.ConnInfo{ID: 1, ApplicationName: "api"}
	for _, e := range loop(conn, time.Now(), 8) {
		events <- e
	}
	done := make(chan error, 1)
	go func() {
		_, err := a.FlushWhere(context.Background(), 1000, Filter{})
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	close(events)
	if err := <-done; !errors.Is(err, ErrStopped) {
		t.Errorf("flush: %v, want ErrStopped", err)
	}
	<-ran
	if n := len(store.ListWhere(Filter{})); n != 1 {
		t.Errorf("%d findings after the channel closed, want the N+1 flushed", n)
	}
}
