// go-echo: the Go peer of the echo benchmark (bench/weft_bench_echo.c).
//
//	go-echo --port P [--addr 127.0.0.1]
//
// net.Listen and one goroutine per connection copying what it reads back to
// the connection, with GOMAXPROCS at its default (all CPUs). Go sets
// TCP_NODELAY on every TCP connection by default. Runs until killed.
// Standard library only, so it builds without network access.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
)

func serve(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 16384)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func main() {
	port := flag.Int("port", -1, "TCP port to listen on (required)")
	addr := flag.String("addr", "127.0.0.1", "IPv4 address to listen on")
	flag.Parse()
	if *port < 1 || *port > 65535 {
		fmt.Fprintln(os.Stderr, "go-echo: --port must be 1..65535")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp4", net.JoinHostPort(*addr, strconv.Itoa(*port)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-echo:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "go-echo: listening on %s\n", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			// EMFILE and the like: keep serving the others.
			fmt.Fprintln(os.Stderr, "go-echo: accept:", err)
			continue
		}
		go serve(c)
	}
}
