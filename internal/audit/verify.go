package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"regexp"
	"sort"
	"strconv"
)

// Kinds of findings.
const (
	KindChanged   = "changed"   // an event's bytes differ from what was written
	KindRemoved   = "removed"   // seqs missing from a chain
	KindInserted  = "inserted"  // an event that is not part of the chain
	KindReordered = "reordered" // an event out of seq order
	KindTruncated = "truncated" // the log ends in an incomplete line
	KindSignature = "signature" // a checkpoint that does not verify
	KindMalformed = "malformed" // a line that is not an audit event at all
	KindUnsigned  = "unsigned"  // events after the last valid checkpoint
	KindTorn      = "torn"      // a torn line a Recovered event accounts for
)

// Finding is one thing Verify reports.
type Finding struct {
	// Line is the 1-based line number the finding is about; Offset its byte
	// offset.
	Line   int
	Offset int64
	// Chain is "writer/writer_id"; empty for lines of no chain.
	Chain string
	// Seq, and SeqTo for a range, name the events.
	Seq, SeqTo uint64
	Kind       string
	Msg        string
	// Problem is set when the finding is evidence of tampering or damage;
	// otherwise it is a note (an unsigned tail, a recovered torn line, an
	// incomplete last line) that a crash explains, and that Strict turns
	// into a problem.
	Problem bool
}

// String formats f as "line N: chain seq S: kind: message".
func (f Finding) String() string {
	var b bytes.Buffer
	if f.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", f.Line)
	}
	if f.Chain != "" {
		b.WriteString(f.Chain)
		if f.Seq > 0 {
			fmt.Fprintf(&b, " seq %d", f.Seq)
			if f.SeqTo > f.Seq {
				fmt.Fprintf(&b, "..%d", f.SeqTo)
			}
		}
		b.WriteString(": ")
	}
	if !f.Problem {
		b.WriteString("note: ")
	}
	b.WriteString(f.Kind + ": " + f.Msg)
	return b.String()
}

// ChainSummary describes one writer's chain in a verified log.
type ChainSummary struct {
	Chain       string
	First, Last uint64 // seq range seen
	Events      int
	Checkpoints int    // valid ones
	SignedTo    uint64 // the highest seq a valid checkpoint vouches for
	Closed      bool   // the last event is a valid "close" checkpoint
}

// Report is the result of Verify.
type Report struct {
	Findings []Finding
	Chains   []ChainSummary
	Lines    int
	// Dropped counts findings left out beyond VerifyOptions.MaxFindings.
	Dropped int
}

// OK reports whether the log verified: no problem, and with strict no note
// either.
func (r *Report) OK(strict bool) bool {
	if r.Dropped > 0 {
		return false
	}
	for _, f := range r.Findings {
		if f.Problem || strict {
			return false
		}
	}
	return true
}

// Problems returns the findings that are problems (all of them with strict).
func (r *Report) Problems(strict bool) []Finding {
	var out []Finding
	for _, f := range r.Findings {
		if f.Problem || strict {
			out = append(out, f)
		}
	}
	return out
}

// VerifyOptions configure Verify.
type VerifyOptions struct {
	// Keys are the trusted audit public keys; a checkpoint signed by any
	// other key is a problem.
	Keys KeySet
	// MaxFindings bounds the report (default 1000).
	MaxFindings int
}

// Verify checks a log: every writer's chain of seq and hashes, and every
// checkpoint's signature. open is called twice (the log is read twice: once
// for the Recovered events, whose torn lines come before them). Memory is
// bounded by the number of writers and findings, not the log's length.
func Verify(open func() (io.ReadCloser, error), opt VerifyOptions) (*Report, error) {
	if opt.MaxFindings <= 0 {
		opt.MaxFindings = 1000
	}
	v := &verifier{opt: opt, chains: map[string]*chain{}, claims: map[string]*claim{}, rep: &Report{}}
	if err := v.pass(open, v.collectClaim); err != nil {
		return nil, err
	}
	if err := v.pass(open, v.line); err != nil {
		return nil, err
	}
	v.finish()
	return v.rep, nil
}

// VerifyBytes verifies a log held in memory.
func VerifyBytes(b []byte, opt VerifyOptions) *Report {
	r, err := Verify(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, opt)
	if err != nil {
		panic(err) // reading memory does not fail
	}
	return r
}

type claim struct {
	by   string // "chain seq N (line L)"
	torn Torn
	used bool
}

type entry struct {
	seq        uint64
	prev, hash string
	line       int
	corrupt    bool // reported as changed: links to and from it are not checked
	authentic  bool // a valid checkpoint: its prev is vouched for
	checkpoint *Checkpoint
}

type gap struct {
	from, to      uint64
	before, after entry
	hasBefore     bool
}

type chain struct {
	name      string
	head      entry
	started   bool
	first     uint64
	events    int
	recent    map[uint64]entry // the last recentMax accepted entries
	gaps      []gap
	pend      *pending
	displaced []entry // events found before their place; reordered or inserted
	cps       int
	signedTo  uint64
	lastValid uint64 // seq of the last valid checkpoint event
	closed    bool
}

// pending is a broken link decided by the chain's next event.
type pending struct {
	fork   bool
	jump   bool  // s skipped ahead of before without linking to it
	before entry // mismatch: the head before s; fork: the first of the two
	s      entry
}

const (
	recentMax = 256
	gapMax    = 1000
	chainMax  = 10000
	claimMax  = 10000
)

type verifier struct {
	opt     VerifyOptions
	chains  map[string]*chain
	order   []string
	claims  map[string]*claim
	rep     *Report
	lastOff int64
}

func (v *verifier) add(f Finding) {
	if len(v.rep.Findings) >= v.opt.MaxFindings {
		v.rep.Dropped++
		return
	}
	v.rep.Findings = append(v.rep.Findings, f)
}

// rawLine is one line of the log.
type rawLine struct {
	n        int
	off      int64
	data     []byte // nil when longer than maxLine
	length   int64  // without the newline
	complete bool   // ends with a newline
	hash     string // LineHash of the line with its newline
	frag     string // hash of the bytes without the newline
}

// pass reads the log line by line with bounded memory.
func (v *verifier) pass(open func() (io.ReadCloser, error), fn func(*rawLine)) error {
	rc, err := open()
	if err != nil {
		return err
	}
	defer rc.Close()
	br := bufio.NewReaderSize(rc, 64*1024)
	var off int64
	var buf []byte
	var hFrag hash.Hash = sha256.New()
	for n := 1; ; n++ {
		l := rawLine{n: n, off: off}
		buf = buf[:0]
		hFrag.Reset()
		tooLong := false
		for {
			chunk, err := br.ReadSlice('\n')
			body := bytes.TrimSuffix(chunk, []byte{'\n'})
			hFrag.Write(body)
			l.length += int64(len(body))
			if !tooLong {
				if len(buf)+len(chunk) > maxLine {
					tooLong, buf = true, buf[:0]
				} else {
					buf = append(buf, chunk...)
				}
			}
			if err == nil {
				l.complete = true
				break
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err != io.EOF {
				return fmt.Errorf("read audit log: %w", err)
			}
			break
		}
		off += l.length
		if l.complete {
			off++
		}
		if l.length == 0 && !l.complete {
			v.lastOff = off
			return nil // end of input
		}
		fragSum := hFrag.Sum(nil)
		l.frag = hex.EncodeToString(fragSum)
		if !tooLong {
			l.data = buf
			l.hash = LineHash(buf)
		} else {
			// The chain hash of a long line is not needed: it is never an event.
			l.hash = "long:" + l.frag
		}
		fn(&l)
		if !l.complete {
			v.lastOff = off
			return nil
		}
	}
}

func (v *verifier) collectClaim(l *rawLine) {
	if l.data == nil || !l.complete || !bytes.Contains(l.data, []byte(Recovered)) {
		return
	}
	var e Event
	if json.Unmarshal(l.data, &e) != nil || e.Event != Recovered || e.Torn == nil || len(v.claims) >= claimMax {
		return
	}
	v.claims[e.Torn.SHA256] = &claim{by: fmt.Sprintf("%s/%s seq %d (line %d)", e.Writer, e.WriterID, e.Seq, l.n), torn: *e.Torn}
}

var (
	reWriter   = regexp.MustCompile(`"writer":"([^"\\]*)"`)
	reWriterID = regexp.MustCompile(`"writer_id":"([^"\\]*)"`)
	reSeq      = regexp.MustCompile(`"seq":([0-9]{1,19})[,}]`)
)

func (v *verifier) line(l *rawLine) {
	v.rep.Lines = l.n
	if c := v.claims[l.frag]; c != nil && !c.used {
		c.used = true
		v.add(Finding{Line: l.n, Offset: l.off, Kind: KindTorn, Msg: fmt.Sprintf("incomplete line of %d bytes at offset %d, left by a crash; accounted for by %s", l.length, l.off, c.by)})
		return
	}
	if !l.complete {
		v.add(Finding{Line: l.n, Offset: l.off, Kind: KindTruncated, Msg: fmt.Sprintf("the log ends in an incomplete line (%d bytes at offset %d): a write cut short by a crash, or the log was truncated", l.length, l.off)})
		return
	}
	if l.data == nil {
		v.add(Finding{Line: l.n, Offset: l.off, Kind: KindMalformed, Problem: true, Msg: fmt.Sprintf("line longer than %d bytes is not an audit event", maxLine)})
		return
	}
	if len(bytes.TrimSpace(l.data)) == 0 {
		v.add(Finding{Line: l.n, Offset: l.off, Kind: KindMalformed, Problem: true, Msg: "empty line (writers never write one)"})
		return
	}
	var e Event
	if err := json.Unmarshal(l.data, &e); err != nil {
		// Changed so that it no longer parses: name the event if the damage
		// spared its writer and seq.
		w, id, s := reWriter.FindSubmatch(l.data), reWriterID.FindSubmatch(l.data), reSeq.FindSubmatch(l.data)
		if w != nil && s != nil {
			seq, _ := strconv.ParseUint(string(s[1]), 10, 64)
			name := string(w[1]) + "/"
			if id != nil {
				name += string(id[1])
			}
			if c := v.chain(name, l); c != nil && seq > 0 {
				v.add(Finding{Line: l.n, Offset: l.off, Chain: name, Seq: seq, Kind: KindChanged, Problem: true, Msg: "the event no longer parses as JSON: " + err.Error()})
				v.step(c, entry{seq: seq, hash: l.hash, line: l.n, corrupt: true}, l)
				return
			}
		}
		v.add(Finding{Line: l.n, Offset: l.off, Kind: KindMalformed, Problem: true, Msg: "not an audit event: " + err.Error()})
		return
	}
	name := e.Writer + "/" + e.WriterID
	c := v.chain(name, l)
	if c == nil {
		return
	}
	if e.Seq == 0 {
		v.add(Finding{Line: l.n, Offset: l.off, Chain: name, Kind: KindInserted, Problem: true, Msg: "event without seq is not part of any chain"})
		return
	}
	en := entry{seq: e.Seq, prev: e.Prev, hash: l.hash, line: l.n}
	// Writers write canonical JSON; anything else was edited.
	if canon, err := marshalLine(&e); err != nil || !bytes.Equal(canon, l.data) {
		v.add(Finding{Line: l.n, Offset: l.off, Chain: name, Seq: e.Seq, Kind: KindChanged, Problem: true, Msg: "the line is not as its writer wrote it (it is not the canonical encoding of its own content)"})
		en.corrupt = true
	}
	if e.Checkpoint != nil && e.Event != CheckpointEvent {
		v.add(Finding{Line: l.n, Offset: l.off, Chain: name, Seq: e.Seq, Kind: KindChanged, Problem: true, Msg: fmt.Sprintf("event %q carries a checkpoint: a checkpoint's name was changed", e.Event)})
		en.corrupt = true
	}
	if e.Event == CheckpointEvent {
		if v.checkCheckpoint(c, &e, l) {
			en.authentic = true
			en.checkpoint = e.Checkpoint
		} else {
			en.corrupt = true // reported; do not report its links again
		}
	}
	v.step(c, en, l)
}

func (v *verifier) chain(name string, l *rawLine) *chain {
	c := v.chains[name]
	if c == nil {
		if len(v.chains) >= chainMax {
			v.add(Finding{Line: l.n, Offset: l.off, Kind: KindMalformed, Problem: true, Msg: "too many writers; the rest of this log is not checked"})
			return nil
		}
		c = &chain{name: name, recent: map[uint64]entry{}}
		v.chains[name] = c
		v.order = append(v.order, name)
	}
	return c
}

// checkCheckpoint reports whether e is a valid checkpoint.
func (v *verifier) checkCheckpoint(c *chain, e *Event, l *rawLine) bool {
	bad := func(kind, msg string) bool {
		v.add(Finding{Line: l.n, Offset: l.off, Chain: c.name, Seq: e.Seq, Kind: kind, Problem: true, Msg: msg})
		return false
	}
	cp := e.Checkpoint
	if cp == nil {
		return bad(KindChanged, "checkpoint without its checkpoint body")
	}
	pub, ok := v.opt.Keys[cp.Key]
	if !ok {
		return bad(KindSignature, fmt.Sprintf("checkpoint signed by key %s, which is not a trusted audit key (--pubkey)", cp.Key))
	}
	sig, err := base64.StdEncoding.DecodeString(cp.Sig)
	if err != nil || !ed25519.Verify(pub, SignedMessage(e), sig) {
		return bad(KindSignature, fmt.Sprintf("bad signature: the checkpoint was changed or not made with key %s", cp.Key))
	}
	if cp.Hash != e.Prev || cp.To+1 != e.Seq || cp.From > cp.To || cp.Count != cp.To-cp.From+1 {
		return bad(KindChanged, fmt.Sprintf("signed checkpoint is inconsistent: from %d to %d count %d hash %.12s, at seq %d with prev %.12s", cp.From, cp.To, cp.Count, cp.Hash, e.Seq, e.Prev))
	}
	return true
}

// step places en in its chain.
func (v *verifier) step(c *chain, en entry, l *rawLine) {
	c.events++
	problem := func(seq, to uint64, kind, msg string) {
		v.add(Finding{Line: l.n, Offset: l.off, Chain: c.name, Seq: seq, SeqTo: to, Kind: kind, Problem: true, Msg: msg})
	}
	if !c.started {
		c.started, c.first = true, en.seq
		if en.seq > 1 {
			c.gaps = append(c.gaps, gap{from: 1, to: en.seq - 1, after: en})
		} else if en.prev != "" && !en.corrupt {
			problem(en.seq, 0, KindChanged, "the first event of a chain has a prev")
		}
		v.accept(c, en)
		return
	}
	if p := c.pend; p != nil && p.jump {
		c.pend = nil
		if en.seq == p.before.seq+1 && en.prev == p.before.hash {
			// The chain goes on from before: s is not in its place.
			c.gaps = c.gaps[:len(c.gaps)-1]
			delete(c.recent, p.s.seq)
			c.head = p.before
			c.recent[p.before.seq] = p.before
			if len(c.displaced) < gapMax {
				c.displaced = append(c.displaced, p.s)
			}
		}
	}
	if p := c.pend; p != nil {
		c.pend = nil
		switch {
		case !p.fork && en.seq == p.s.seq+1 && en.prev == p.s.hash:
			problem(p.before.seq, 0, KindChanged, fmt.Sprintf("the event at line %d was changed: its hash does not match the prev that seq %d (line %d) recorded", p.before.line, p.s.seq, p.s.line))
		case !p.fork && en.seq == p.s.seq && en.prev == p.before.hash:
			problem(p.s.seq, 0, KindInserted, fmt.Sprintf("the event at line %d was inserted: it does not link to seq %d (line %d), the event at line %d does", p.s.line, p.before.seq, p.before.line, l.n))
			c.head = p.before
			c.recent[p.before.seq] = p.before
			delete(c.recent, p.s.seq)
		case !p.fork:
			problem(p.s.seq, 0, KindChanged, fmt.Sprintf("the event at line %d was changed: it does not link to seq %d (line %d) and the next event does not link to it", p.s.line, p.before.seq, p.before.line))
			c.head.corrupt = true
		case en.seq == p.s.seq+1 && en.prev == p.s.hash:
			problem(p.before.seq, 0, KindInserted, fmt.Sprintf("the event at line %d was inserted: seq %d is at line %d, which the next event links to", p.before.line, p.s.seq, p.s.line))
			c.head = p.s
			c.recent[p.s.seq] = p.s
		case en.seq == p.before.seq+1 && en.prev == p.before.hash:
			problem(p.s.seq, 0, KindInserted, fmt.Sprintf("the event at line %d was inserted: it repeats seq %d of line %d, which the next event links to", p.s.line, p.s.seq, p.before.line))
		default:
			problem(p.s.seq, 0, KindInserted, fmt.Sprintf("seq %d appears twice (lines %d and %d): one was inserted", p.s.seq, p.before.line, p.s.line))
		}
	}
	h := c.head
	if en.seq == h.seq+2 {
		for i, d := range c.displaced {
			if d.seq == h.seq+1 && (d.prev == h.hash || h.corrupt) && en.prev == d.hash {
				c.displaced = append(c.displaced[:i], c.displaced[i+1:]...)
				v.add(Finding{Line: d.line, Chain: c.name, Seq: d.seq, Kind: KindReordered, Problem: true, Msg: fmt.Sprintf("the event is out of order: it belongs between seq %d (line %d) and seq %d (line %d)", h.seq, h.line, en.seq, l.n)})
				v.accept(c, d)
				h = d
				break
			}
		}
	}
	linked := en.prev == h.hash || h.corrupt || en.corrupt
	switch {
	case en.seq == h.seq+1:
		switch {
		case linked:
		case en.authentic:
			problem(h.seq, 0, KindChanged, fmt.Sprintf("the event at line %d was changed: its hash does not match the prev the signed checkpoint seq %d (line %d) recorded", h.line, en.seq, en.line))
		default:
			c.pend = &pending{before: h, s: en}
		}
		v.accept(c, en)
	case en.prev == h.hash && !h.corrupt && !en.corrupt:
		// It links to the head but has another seq: its seq was changed.
		problem(en.seq, 0, KindChanged, fmt.Sprintf("the event links to seq %d (line %d) but says seq %d: its seq was changed", h.seq, h.line, en.seq))
		en.seq, en.corrupt = h.seq+1, true
		v.accept(c, en)
	case en.seq > h.seq+1:
		if len(c.gaps) < gapMax {
			c.gaps = append(c.gaps, gap{from: h.seq + 1, to: en.seq - 1, before: h, hasBefore: true, after: en})
			if !h.corrupt && !en.corrupt {
				c.pend = &pending{jump: true, before: h, s: en}
			}
		}
		v.accept(c, en)
	default: // en.seq <= h.seq
		for i, g := range c.gaps {
			if en.seq < g.from || en.seq > g.to {
				continue
			}
			problem(en.seq, 0, KindReordered, fmt.Sprintf("the event is out of order: it comes after seq %d (line %d)", h.seq, h.line))
			switch {
			case g.from == g.to:
				c.gaps = append(c.gaps[:i], c.gaps[i+1:]...)
			case en.seq == g.from:
				c.gaps[i].from++
			case en.seq == g.to:
				c.gaps[i].to--
			default:
				rest := gap{from: en.seq + 1, to: g.to, after: g.after}
				c.gaps[i].to = en.seq - 1
				if len(c.gaps) < gapMax {
					c.gaps = append(c.gaps, rest)
				}
			}
			return
		}
		if r, ok := c.recent[en.seq]; ok {
			switch {
			case r.hash == en.hash:
				problem(en.seq, 0, KindInserted, fmt.Sprintf("the event at line %d is a copy of line %d", l.n, r.line))
			case en.seq == h.seq && en.prev == h.prev && !h.corrupt:
				c.pend = &pending{fork: true, before: h, s: en}
			default:
				problem(en.seq, 0, KindInserted, fmt.Sprintf("the event at line %d claims seq %d, which line %d holds", l.n, en.seq, r.line))
			}
			return
		}
		problem(en.seq, 0, KindReordered, fmt.Sprintf("the event is out of order: it comes after seq %d (line %d)", h.seq, h.line))
	}
}

func (v *verifier) accept(c *chain, en entry) {
	c.head = en
	c.recent[en.seq] = en
	if en.seq > recentMax {
		delete(c.recent, en.seq-recentMax)
	}
	if len(c.recent) > 2*recentMax {
		c.recent = map[uint64]entry{en.seq: en}
	}
	if en.authentic {
		c.cps++
		c.lastValid = en.seq
		if en.checkpoint.To > c.signedTo {
			c.signedTo = en.checkpoint.To
		}
		c.closed = en.checkpoint.Reason == "close"
	} else {
		c.closed = false
	}
}

func (v *verifier) finish() {
	defer sort.SliceStable(v.rep.Findings, func(i, j int) bool {
		a, b := v.rep.Findings[i].Line, v.rep.Findings[j].Line
		return a != 0 && (b == 0 || a < b)
	})
	for _, name := range v.order {
		c := v.chains[name]
		problem := func(line int, seq, to uint64, kind, msg string) {
			v.add(Finding{Line: line, Chain: c.name, Seq: seq, SeqTo: to, Kind: kind, Problem: true, Msg: msg})
		}
		if p := c.pend; p != nil {
			if p.fork {
				problem(p.s.line, p.s.seq, 0, KindInserted, fmt.Sprintf("seq %d appears twice (lines %d and %d): one was inserted", p.s.seq, p.before.line, p.s.line))
			} else {
				problem(p.s.line, p.before.seq, p.s.seq, KindChanged, fmt.Sprintf("the hash link from seq %d (line %d) to seq %d (line %d) is broken: seq %d was changed, or seq %d was changed or inserted", p.before.seq, p.before.line, p.s.seq, p.s.line, p.before.seq, p.s.seq))
			}
		}
		if p := c.pend; p != nil && p.jump {
			c.pend = nil
		}
		for _, d := range c.displaced {
			problem(d.line, d.seq, 0, KindInserted, fmt.Sprintf("the event at line %d is not part of the chain: it does not link to the events around it", d.line))
		}
		sort.Slice(c.gaps, func(i, j int) bool { return c.gaps[i].from < c.gaps[j].from })
		for _, g := range c.gaps {
			n := g.to - g.from + 1
			where := fmt.Sprintf("before seq %d (line %d): the chain starts there", g.after.seq, g.after.line)
			if g.hasBefore {
				where = fmt.Sprintf("between seq %d (line %d) and seq %d (line %d)", g.before.seq, g.before.line, g.after.seq, g.after.line)
			}
			problem(g.after.line, g.from, g.to, KindRemoved, fmt.Sprintf("%d event(s) missing %s", n, where))
		}
		if c.head.seq > c.lastValid {
			msg := fmt.Sprintf("%d event(s) after the last valid checkpoint (seq %d) are not signed: the writer is still running, crashed, or the log was truncated", c.head.seq-c.lastValid, c.lastValid)
			if c.lastValid == 0 {
				msg = fmt.Sprintf("no valid checkpoint: %d event(s) are not signed", c.head.seq)
			}
			v.add(Finding{Line: c.head.line, Chain: c.name, Seq: c.lastValid + 1, SeqTo: c.head.seq, Kind: KindUnsigned, Msg: msg})
		}
		v.rep.Chains = append(v.rep.Chains, ChainSummary{Chain: c.name, First: c.first, Last: c.head.seq, Events: c.events, Checkpoints: c.cps, SignedTo: c.signedTo, Closed: c.closed})
	}
	var unused []*claim
	for _, c := range v.claims {
		if !c.used {
			unused = append(unused, c)
		}
	}
	sort.Slice(unused, func(i, j int) bool { return unused[i].by < unused[j].by })
	for _, c := range unused {
		v.add(Finding{Kind: KindRemoved, Problem: true, Msg: fmt.Sprintf("%s accounts for a torn line (offset %d, %d bytes, sha256 %.12s…) that is not in the log", c.by, c.torn.Offset, c.torn.Length, c.torn.SHA256)})
	}
}
