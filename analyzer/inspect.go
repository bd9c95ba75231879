package analyzer

import "github.com/nplus1/nplus1/detector"

// Inspector is the inspection connection behind the detector's
// missing_index rule and its judgement of leading_wildcard (package inspect
// implements it). The analyzer hands it what the detector asks for
// (detector.Detector.Wants) after every detector call, on its own
// goroutine; Flush, once it has asked, gives up on the answers still to
// come (detector.Detector.Unanswered).
type Inspector interface {
	// Inspect answers r at once from a cache (ok true), or queues it and
	// returns: the answer comes later on Results. It must not block.
	Inspect(r detector.InspectionRequest) (ins detector.Inspection, ok bool)
	// Results delivers the answers of queued requests; Run feeds each to
	// the detector (detector.Detector.Inspected).
	Results() <-chan detector.Inspection
}

// ask hands the detector's requests to the inspector and delivers the
// findings of the answers it has at once. The caller holds a.mu.
func (a *Analyzer) ask() []detector.Finding {
	if a.cfg.Inspector == nil {
		return nil
	}
	var out []detector.Finding
	for _, r := range a.det.Wants() {
		if ins, ok := a.cfg.Inspector.Inspect(r); ok {
			fs := a.det.Inspected(ins)
			a.deliver(fs)
			out = append(out, fs...)
		}
	}
	return out
}

// inspected feeds one answer of the inspector to the detector and delivers
// what it completes.
func (a *Analyzer) inspected(ins detector.Inspection) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.deliver(a.det.Inspected(ins))
}

// inspections is the inspector's answers; nil (never ready) without one.
func (a *Analyzer) inspections() <-chan detector.Inspection {
	if a.cfg.Inspector == nil {
		return nil
	}
	return a.cfg.Inspector.Results()
}
