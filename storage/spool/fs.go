package spool

import (
	"errors"
	"io/fs"
	"os"
	"syscall"

	"github.com/phigate/phigate/session/benchstage"
)

// file is what the spool needs of an open file. The seam exists so that
// tests can make a write or a sync fail without filling a real disk.
type file interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Truncate(size int64) error
	Size() (int64, error)
	// Datasync makes the file's data (and the metadata needed to read it
	// back) durable: fdatasync(2).
	Datasync() error
	// Preallocate reserves size bytes on disk, best effort (fallocate(2)).
	Preallocate(size int64) error
	Close() error
}

// fileSystem is the spool's view of the operating system.
type fileSystem interface {
	OpenFile(name string, flag int, perm fs.FileMode) (file, error)
	Remove(name string) error
	Rename(oldpath, newpath string) error
	ReadDir(name string) ([]fs.DirEntry, error)
	MkdirAll(name string, perm fs.FileMode) error
	// SyncDir makes the directory's entries (creations, renames, removals)
	// durable.
	SyncDir(name string) error
}

type osFS struct{}

// OpenFile is os.OpenFile without its probe of the network poller (four
// fcntl and a failing epoll_ctl for every regular file): the applier
// opens session files again and again (openFiles).
func (osFS) OpenFile(name string, flag int, perm fs.FileMode) (file, error) {
	for {
		fd, err := syscall.Open(name, flag|syscall.O_CLOEXEC, uint32(perm.Perm()))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return osFile{os.NewFile(uintptr(fd), name)}, nil
	}
}

func (osFS) Remove(name string) error                     { return os.Remove(name) }
func (osFS) Rename(oldpath, newpath string) error         { return os.Rename(oldpath, newpath) }
func (osFS) ReadDir(name string) ([]fs.DirEntry, error)   { return os.ReadDir(name) }
func (osFS) MkdirAll(name string, perm fs.FileMode) error { return os.MkdirAll(name, perm) }

func (osFS) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

type osFile struct{ *os.File }

func (f osFile) Size() (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

func (f osFile) Datasync() error {
	if benchstage.NoFsync() {
		return nil // a benchmark build's stage without fsync
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = syscall.Fdatasync(int(fd))
			if serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &fs.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}

func (f osFile) Preallocate(size int64) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.Fallocate(int(fd), 0, 0, size)
	}); err != nil {
		return err
	}
	if errors.Is(serr, syscall.EOPNOTSUPP) || errors.Is(serr, syscall.ENOSYS) {
		return nil // the zero fill that follows allocates anyway
	}
	if serr != nil {
		return &fs.PathError{Op: "fallocate", Path: f.Name(), Err: serr}
	}
	return nil
}
