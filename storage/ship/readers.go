package ship

import (
	"container/list"
	"errors"
	"io/fs"
	"os"
	"syscall"

	"github.com/phigate/phigate/storage/spool"
)

// maxReaders bounds the session files the shipper holds open of its own.
// Live sessions are read through the spool's own descriptors
// (spool.ReadOpen) and take none; these are for final recordings and
// recordings a crash left open, which are read to their end in a tick or a
// few and then closed.
const maxReaders = 64

// readers is the shipper's open session files, least recently used first
// out. Guarded by Shipper.mu.
type readers struct {
	max   int
	lru   *list.List // of *reader, most recently used at the front
	byID  map[string]*list.Element
	opens int // files opened, for tests
}

type reader struct {
	id string
	f  *os.File
}

func newReaders(max int) *readers {
	return &readers{max: max, lru: list.New(), byID: map[string]*list.Element{}}
}

// readAt reads the spool file of session id at off: through the spool's
// descriptor while the session is open, else through a file of the
// shipper's own kept open across ticks (opening it, and closing the least
// recently used one beyond max). A file removed while it is open is still
// read: it holds what the spool wrote. os.ErrNotExist: there is no file.
func (r *readers) readAt(sp *spool.Spool, id string, final bool, p []byte, off int64) (int, error) {
	if !final {
		n, err := sp.ReadOpen(id, p, off)
		if !errors.Is(err, spool.ErrNotFound) {
			return n, err
		}
		// Closed since OpenSessions, or recovered and not reopened.
	}
	f, err := r.get(sp.SessionFile(id), id)
	if err != nil {
		return 0, err
	}
	return f.ReadAt(p, off)
}

func (r *readers) get(path, id string) (*os.File, error) {
	if e, ok := r.byID[id]; ok {
		r.lru.MoveToFront(e)
		return e.Value.(*reader).f, nil
	}
	f, err := openRead(path)
	if err != nil {
		return nil, err
	}
	r.opens++
	r.byID[id] = r.lru.PushFront(&reader{id: id, f: f})
	for r.lru.Len() > r.max {
		r.drop(r.lru.Back().Value.(*reader).id)
	}
	return f, nil
}

// drop closes the file of session id, if open.
func (r *readers) drop(id string) {
	e, ok := r.byID[id]
	if !ok {
		return
	}
	e.Value.(*reader).f.Close()
	r.lru.Remove(e)
	delete(r.byID, id)
}

func (r *readers) closeAll() {
	for id := range r.byID {
		r.drop(id)
	}
}

// openFile is os.OpenFile without its probe of the network poller (four
// fcntl and a failing epoll_ctl for every regular file): more calls than
// the reads of a tick.
func openFile(path string, flag int, perm uint32) (*os.File, error) {
	for {
		fd, err := syscall.Open(path, flag|syscall.O_CLOEXEC, perm)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: path, Err: err}
		}
		return os.NewFile(uintptr(fd), path), nil
	}
}

func openRead(path string) (*os.File, error) { return openFile(path, syscall.O_RDONLY, 0) }
