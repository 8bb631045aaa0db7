// The Go twin of examples/echo_server.c, for bench/echo/echo_load.c to
// compare against: the same line echo protocol, command line and output,
// built the way a Go programmer would write it (a goroutine per
// connection, the net package, a read deadline renewed per read).
//
//	echo_server_go [--max-connections N] [--idle-timeout-ms MS]
//	               [--shutdown-timeout-ms MS] PORT
//
// Prints "listening on 127.0.0.1:PORT" first and, after SIGINT or
// SIGTERM, "accepted A connections, closed C (I idle), received R
// requests, answered W". A blocked Read does not see a context in Go, so
// the shutdown sets a past deadline on every open connection, which wakes
// its Read (Go's http.Server does the same with a list of connections).
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const lineMaxBytes = 4096 // as the C server: a longer line closes the connection

type server struct {
	ctx                                        context.Context // canceled by the shutdown
	slots                                      chan struct{}   // one token per connection served
	idleTimeout                                time.Duration
	tasks                                      sync.WaitGroup
	mu                                         sync.Mutex
	open                                       map[net.Conn]struct{} // under mu: to wake at shutdown
	accepted, closed, idle, received, answered atomic.Int64
}

// serve echoes each complete line until the client closes, stays idle,
// or the server stops; lines read are answered before it looks again.
func (s *server) serve(conn net.Conn) {
	defer s.tasks.Done()
	defer func() { <-s.slots }()
	defer s.closed.Add(1)
	defer conn.Close()
	defer s.forget(conn)
	buffer := make([]byte, lineMaxBytes)
	length := 0
	for s.ctx.Err() == nil {
		conn.SetDeadline(time.Now().Add(s.idleTimeout))
		got, err := conn.Read(buffer[length:])
		length += got
		done := 0
		for {
			newline := bytes.IndexByte(buffer[done:length], '\n')
			if newline < 0 {
				break
			}
			s.received.Add(1)
			if _, werr := conn.Write(buffer[done : done+newline+1]); werr != nil {
				return
			}
			s.answered.Add(1)
			done += newline + 1
		}
		length = copy(buffer, buffer[done:length])
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && s.ctx.Err() == nil {
				s.idle.Add(1)
			}
			return
		}
		if length == len(buffer) {
			return
		}
	}
}

func (s *server) remember(conn net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return false
	}
	s.open[conn] = struct{}{}
	return true
}

func (s *server) forget(conn net.Conn) {
	s.mu.Lock()
	delete(s.open, conn)
	s.mu.Unlock()
}

func (s *server) acceptLoop(listener net.Listener) {
	defer s.tasks.Done()
	defer listener.Close()
	for {
		select {
		case s.slots <- struct{}{}:
		case <-s.ctx.Done():
			return
		}
		conn, err := listener.Accept()
		if err != nil {
			<-s.slots
			if s.ctx.Err() != nil {
				return
			}
			time.Sleep(100 * time.Millisecond) // out of fds: wait for some to return
			continue
		}
		s.accepted.Add(1)
		if !s.remember(conn) {
			conn.Close()
			s.closed.Add(1)
			<-s.slots
			return
		}
		s.tasks.Add(1)
		go s.serve(conn)
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: %s [--max-connections N] [--idle-timeout-ms MS] [--shutdown-timeout-ms MS] PORT\n", os.Args[0])
	os.Exit(2)
}

func main() {
	flags := flag.NewFlagSet(os.Args[0], flag.ContinueOnError)
	maxConnections := flags.Int("max-connections", 64, "")
	idleMs := flags.Int("idle-timeout-ms", 30000, "")
	shutdownMs := flags.Int("shutdown-timeout-ms", 5000, "")
	flags.Usage = func() {}
	if flags.Parse(os.Args[1:]) != nil || flags.NArg() != 1 || *maxConnections < 1 || *idleMs < 1 || *shutdownMs < 1 {
		usage()
	}
	port, err := strconv.Atoi(flags.Arg(0))
	if err != nil || port < 0 || port > 65535 {
		usage()
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	listener, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo_server_go: listen:", err)
		os.Exit(1)
	}
	s := &server{ctx: ctx, slots: make(chan struct{}, *maxConnections),
		idleTimeout: time.Duration(*idleMs) * time.Millisecond, open: map[net.Conn]struct{}{}}
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(out, "listening on %s\n", listener.Addr())
	out.Flush()
	s.tasks.Add(1)
	go s.acceptLoop(listener)

	<-ctx.Done()
	listener.Close() // wakes Accept
	s.mu.Lock()
	for conn := range s.open {
		conn.SetDeadline(time.Now()) // wakes Read
	}
	s.mu.Unlock()
	finished := make(chan struct{})
	go func() { s.tasks.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(time.Duration(*shutdownMs) * time.Millisecond):
		fmt.Fprintf(os.Stderr, "echo_server_go: connections still open after %d ms\n", *shutdownMs)
		os.Exit(1)
	}
	fmt.Fprintf(out, "accepted %d connections, closed %d (%d idle), received %d requests, answered %d\n",
		s.accepted.Load(), s.closed.Load(), s.idle.Load(), s.received.Load(), s.answered.Load())
	out.Flush()
}
