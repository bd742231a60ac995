package audit

import (
	"cmp"
	"path/filepath"
	"slices"
	"strings"
)

// ReadRecords returns the records of the log in dir, in order. It reads as far as the records parse: on a line
// that is not a record it returns those before it and a *TamperError naming the line. It does not verify the log
// (Verify does).
func ReadRecords(dir string) ([]*Record, error) {
	ents, _, _, err := loadLog(dir)
	if err == nil {
		out := make([]*Record, len(ents))
		for i, e := range ents {
			out[i] = e.rec
		}
		return out, nil
	}
	// Best effort: the records up to the bad line, file by file.
	nums, lerr := logFiles(dir)
	if lerr != nil {
		return nil, lerr
	}
	var out []*Record
	for _, n := range nums {
		stop := false
		_, _ = scanFile(filepath.Join(dir, logFileName(n)), 0, 1, func(_ Position, line []byte) error {
			r, perr := ParseRecord(line)
			if perr != nil {
				stop = true
				return perr
			}
			out = append(out, r)
			return nil
		})
		if stop {
			break
		}
	}
	return out, err
}

// TraceLog is one log's records given to Trace, under a name (its origin).
type TraceLog struct {
	Name    string
	Records []*Record
}

// TraceStep is one record of a task's execution chain and the log it is from.
type TraceStep struct {
	Log    string  `json:"log"`
	Record *Record `json:"record"`
}

// Chain is one task's execution chain, merged from several logs.
type Chain struct {
	// Txns and TraceIDs are the correlation ids the chain's decisions carry.
	Txns     []string `json:"txns"`
	TraceIDs []string `json:"traceIds"`
	// Agent is the agent that started the task (the first call's caller); Subjects the users it acted for.
	Agent    string      `json:"agent,omitempty"`
	Subjects []string    `json:"subjects,omitempty"`
	Steps    []TraceStep `json:"steps"`
}

// TraceID is the trace id of a W3C traceparent ("00-<trace id>-<parent id>-<flags>"), or of a bare 32-digit trace
// id; "" for anything else.
func TraceID(s string) string {
	switch {
	case len(s) >= 55 && s[2] == '-' && s[35] == '-' && s[52] == '-' && isLowerHex(s[3:35]):
		return s[3:35]
	case len(s) == 32 && isLowerHex(s):
		return s
	}
	return ""
}

func isLowerHex(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && (r < 'a' || r > 'f') }) < 0
}

// Trace picks one task's chain out of logs. id is a Txn-Token txn, a traceparent or a trace id. The chain holds
// every decision that carries id, and every decision that shares a txn or a trace id with one it holds (so a
// traceparent finds the transaction, and the transaction each hop's trace); then every remediation or
// controller revocation behind one of its refusals (the same revocation id), or about one of its agents or
// users between its first and last decision. Steps are in time order (a log's own order for equal times).
func Trace(id string, logs []TraceLog) *Chain {
	txns, traces := map[string]bool{}, map[string]bool{}
	if t := TraceID(id); t != "" {
		traces[t] = true
	} else {
		txns[id] = true
	}
	type ref struct{ log, i int }
	picked := map[ref]bool{}
	// Grow the set of ids until no decision adds one: each pass over the decisions is linear, and there are at
	// most as many passes as ids.
	for changed := true; changed; {
		changed = false
		for li, l := range logs {
			for i, r := range l.Records {
				if r.Kind != KindDecision || picked[ref{li, i}] {
					continue
				}
				tid := TraceID(r.Traceparent)
				if !(r.Txn != "" && txns[r.Txn]) && !(tid != "" && traces[tid]) {
					continue
				}
				picked[ref{li, i}] = true
				if r.Txn != "" && !txns[r.Txn] {
					txns[r.Txn], changed = true, true
				}
				if tid != "" && !traces[tid] {
					traces[tid], changed = true, true
				}
			}
		}
	}
	c := &Chain{}
	if len(picked) == 0 {
		c.Steps = []TraceStep{}
		return c
	}
	agents, subjects, revocations := map[string]bool{}, map[string]bool{}, map[string]bool{}
	var first, last Record
	for ref := range picked {
		r := logs[ref.log].Records[ref.i]
		if r.Agent != "" {
			agents[r.Agent] = true
		}
		if r.Tool != "" {
			agents[r.Tool] = true
		}
		if r.Subject != "" {
			subjects[r.Subject] = true
		}
		if r.RevocationID != "" {
			revocations[r.RevocationID] = true
		}
		if first.Time.IsZero() || r.Time.Before(first.Time) {
			first = *r
		}
		if r.Time.After(last.Time) {
			last = *r
		}
	}
	for li, l := range logs {
		for i, r := range l.Records {
			if picked[ref{li, i}] || r.Kind == KindDecision {
				continue
			}
			if r.Kind == KindController && !strings.Contains(r.Action, "revoke") && !strings.HasPrefix(r.Action, "set-") {
				continue
			}
			about := (r.Agent != "" && agents[r.Agent]) || (r.Subject != "" && subjects[r.Subject])
			within := !r.Time.Before(first.Time) && !r.Time.After(last.Time)
			if (r.RevocationID != "" && revocations[r.RevocationID]) || (about && within) {
				picked[ref{li, i}] = true
			}
		}
	}
	for li, l := range logs {
		for i, r := range l.Records {
			if picked[ref{li, i}] {
				c.Steps = append(c.Steps, TraceStep{Log: l.Name, Record: r})
			}
		}
	}
	// Stable: equal times keep the order of the logs given and of each log's records.
	slices.SortStableFunc(c.Steps, func(a, b TraceStep) int { return a.Record.Time.Compare(b.Record.Time) })
	for _, s := range c.Steps {
		r := s.Record
		if r.Kind != KindDecision {
			continue
		}
		if c.Agent == "" && r.Agent != "" {
			c.Agent = r.Agent
		}
		if r.Subject != "" && !slices.Contains(c.Subjects, r.Subject) {
			c.Subjects = append(c.Subjects, r.Subject)
		}
	}
	c.Txns = sortedKeys(txns)
	c.TraceIDs = sortedKeys(traces)
	return c
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, cmp.Compare)
	return out
}
