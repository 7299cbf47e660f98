//go:build !linux

package pulse

import (
	"net"
	"syscall"
)

// Parking idle readers needs epoll (park_linux.go); elsewhere every
// connection keeps its reader goroutine.

func (s *session) initParking(net.Conn, *reads) {}
func (s *session) mayPark() bool                { return false }
func (s *session) parkReader() bool             { return false }
func (s *session) unpark()                      {}
func stopParker()                               {}
func (s *session) writeNow([]byte) int          { return 0 }
func (s *session) writevNow([][]byte) int       { return 0 }
func (s *session) readSoon()                    {}
func (s *session) roundBudget() int             { return 0 }

// sockReader reads through the connection elsewhere (see rawsys_linux.go):
// reads.raw is never set.
type sockReader struct{}

func newSockReader(syscall.RawConn) *sockReader { return nil }

func (*sockReader) read(net.Conn, []byte) (int, error) { return 0, nil }
