package mask

// Stream masks text that arrives in pieces (terminal output, COPY data), so
// that PHI split across two reads is still found: it holds back the tail of
// the text after the last line break (or, for long lines, the last space)
// until more arrives or the stream ends.
type Stream struct {
	sc      *Scanner
	pending []byte
	// Found, if set, is called with each finding (offsets into the text
	// passed to it, which is valid only during the call).
	Found func(text []byte, f Finding)
}

// streamHold is the most a Stream holds back without a line break.
const streamHold = 4096

// NewStream returns a Stream that masks with det.
func (det *Detector) NewStream() *Stream { return &Stream{sc: det.NewScanner()} }

// Append masks as much of the text seen so far as is safe and appends it
// to dst, replacing each finding with "[TYPE]".
func (st *Stream) Append(dst, p []byte) []byte {
	st.pending = append(st.pending, p...)
	cut := -1
	for i := len(st.pending) - 1; i >= 0; i-- {
		if st.pending[i] == '\n' {
			cut = i + 1
			break
		}
	}
	if cut < 0 {
		if len(st.pending) < streamHold {
			return dst
		}
		// a long line: cut at a space well before the end
		for i := len(st.pending) - 256; i > 0; i-- {
			if st.pending[i] == ' ' {
				cut = i + 1
				break
			}
		}
		if cut < 0 {
			cut = len(st.pending) - 256
		}
	}
	return st.emit(dst, cut)
}

// Flush masks and appends everything held back; call it at the end.
func (st *Stream) Flush(dst []byte) []byte { return st.emit(dst, len(st.pending)) }

func (st *Stream) emit(dst []byte, cut int) []byte {
	text := st.pending[:cut]
	found := st.sc.Scan(text)
	if st.Found != nil {
		for _, f := range found {
			st.Found(text, f)
		}
	}
	dst = AppendTagged(dst, text, found)
	n := copy(st.pending, st.pending[cut:])
	st.pending = st.pending[:n]
	return dst
}
