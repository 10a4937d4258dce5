package asciicast

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Event codes.
const (
	Output = "o"
	Input  = "i"
	Resize = "r"
	Marker = "m"
)

// MaxLine bounds one line when reading.
const MaxLine = 4 << 20

// Header is the first line of a recording.
type Header struct {
	Version   int               `json:"version"`
	Width     int               `json:"width"`
	Height    int               `json:"height"`
	Timestamp int64             `json:"timestamp,omitempty"`
	Duration  float64           `json:"duration,omitempty"`
	Command   string            `json:"command,omitempty"`
	Title     string            `json:"title,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
}

// Event is one recorded event.
type Event struct {
	Time float64
	Code string
	Data string
}

// Writer records events. It is safe for concurrent use.
type Writer struct {
	mu      sync.Mutex
	w       io.Writer
	start   time.Time
	last    float64
	pending map[string][]byte // incomplete UTF-8 tail per stream
	// Now is the clock; tests replace it before the first event.
	Now func() time.Time
	err error
}

// NewWriter writes h (Version is set to 2; a zero Timestamp becomes the
// start time) and returns a Writer for the events.
func NewWriter(w io.Writer, h Header, start time.Time) (*Writer, error) {
	h.Version = 2
	if h.Timestamp == 0 {
		h.Timestamp = start.Unix()
	}
	if h.Width <= 0 {
		h.Width = 80
	}
	if h.Height <= 0 {
		h.Height = 24
	}
	b, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("write asciicast header: %w", err)
	}
	return &Writer{w: w, start: start, pending: map[string][]byte{}, Now: time.Now}, nil
}

// Output records terminal output.
func (w *Writer) Output(p []byte) error { return w.stream(Output, p) }

// Input records keyboard input.
func (w *Writer) Input(p []byte) error { return w.stream(Input, p) }

// Resize records a terminal size change.
func (w *Writer) Resize(cols, rows int) error {
	return w.event(Resize, strconv.Itoa(cols)+"x"+strconv.Itoa(rows))
}

// Mark records a marker (asciinema shows them as chapter points).
func (w *Writer) Mark(label string) error { return w.event(Marker, toValid(label)) }

// Flush writes out any held-back partial UTF-8 sequence (as U+FFFD).
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, code := range []string{Output, Input} {
		if p := w.pending[code]; len(p) > 0 {
			delete(w.pending, code)
			if err := w.writeLocked(code, toValid(string(p))); err != nil {
				return err
			}
		}
	}
	return w.err
}

func (w *Writer) stream(code string, p []byte) error {
	if len(p) == 0 {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	buf := append(w.pending[code], p...)
	cut := completePrefix(buf)
	w.pending[code] = append([]byte(nil), buf[cut:]...)
	if cut == 0 {
		return w.err
	}
	return w.writeLocked(code, toValid(string(buf[:cut])))
}

func (w *Writer) event(code, data string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writeLocked(code, data)
}

func (w *Writer) writeLocked(code, data string) error {
	if w.err != nil {
		return w.err
	}
	t := w.Now().Sub(w.start).Seconds()
	if t < w.last {
		t = w.last
	}
	w.last = t
	ds, _ := json.Marshal(data)
	line := make([]byte, 0, len(ds)+32)
	line = append(line, '[')
	line = strconv.AppendFloat(line, t, 'f', 6, 64)
	line = append(line, ", \""...)
	line = append(line, code...)
	line = append(line, "\", "...)
	line = append(line, ds...)
	line = append(line, "]\n"...)
	if _, err := w.w.Write(line); err != nil {
		w.err = fmt.Errorf("write asciicast event: %w", err)
	}
	return w.err
}

// completePrefix returns the length of the longest prefix of b that does
// not end inside a UTF-8 sequence which later bytes could still complete.
func completePrefix(b []byte) int {
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax+1; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				return i
			}
			return len(b)
		}
	}
	return len(b)
}

// toValid replaces each invalid byte with U+FFFD, as decoding rune by
// rune does.
func toValid(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return string([]rune(s))
}

// Reader reads a recording.
type Reader struct {
	Header Header
	sc     *bufio.Scanner
	line   int
}

// NewReader reads the header from r.
func NewReader(r io.Reader) (*Reader, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxLine)
	rd := &Reader{sc: sc}
	if !sc.Scan() {
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("read asciicast header: %w", err)
		}
		return nil, errors.New("read asciicast header: empty recording")
	}
	rd.line = 1
	if err := json.Unmarshal(sc.Bytes(), &rd.Header); err != nil {
		return nil, fmt.Errorf("parse asciicast header: %w", err)
	}
	if rd.Header.Version != 2 {
		return nil, fmt.Errorf("parse asciicast header: version %d, want 2", rd.Header.Version)
	}
	return rd, nil
}

// Next returns the next event, or io.EOF.
func (r *Reader) Next() (Event, error) {
	for r.sc.Scan() {
		r.line++
		if len(r.sc.Bytes()) == 0 {
			continue
		}
		var raw []json.RawMessage
		if err := json.Unmarshal(r.sc.Bytes(), &raw); err != nil || len(raw) != 3 {
			return Event{}, fmt.Errorf("asciicast line %d: not a [time, code, data] event", r.line)
		}
		var e Event
		if json.Unmarshal(raw[0], &e.Time) != nil || json.Unmarshal(raw[1], &e.Code) != nil || json.Unmarshal(raw[2], &e.Data) != nil {
			return Event{}, fmt.Errorf("asciicast line %d: bad event fields", r.line)
		}
		if e.Time < 0 {
			return Event{}, fmt.Errorf("asciicast line %d: negative time", r.line)
		}
		return e, nil
	}
	if err := r.sc.Err(); err != nil {
		return Event{}, fmt.Errorf("asciicast line %d: %w", r.line+1, err)
	}
	return Event{}, io.EOF
}
