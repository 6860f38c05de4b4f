// go-http: the Go net/http peer of weft-http for the http benchmark
// (bench/sections/servers.py).
//
//	go-http --port P [--addr A]
//
// Every request gets 200 OK, Content-Type: text/plain, Content-Length: 5,
// body "hello"; HTTP/1.1 keep-alive as net/http does it (one goroutine per
// connection, GOMAXPROCS = all CPUs). Prints "go-http: listening on A:P" on
// stderr once it accepts. SIGINT/SIGTERM end it. Standard library only, so it
// builds in GOPATH mode without network access.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	port := flag.Int("port", -1, "TCP port (0: any free port)")
	addr := flag.String("addr", "127.0.0.1", "IPv4 address to listen on")
	flag.Parse()
	if *port < 0 || *port > 65535 {
		fmt.Fprintln(os.Stderr, "usage: go-http --port P [--addr A]")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp4", fmt.Sprintf("%s:%d", *addr, *port))
	if err != nil {
		fmt.Fprintf(os.Stderr, "go-http: listen: %v\n", err)
		os.Exit(1)
	}
	body := []byte("hello")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd["Content-Type"] = []string{"text/plain"}
		hd["Content-Length"] = []string{"5"}
		w.Write(body)
	})
	srv := &http.Server{Handler: h}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		srv.Close()
	}()
	fmt.Fprintf(os.Stderr, "go-http: listening on %s\n", ln.Addr())
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintf(os.Stderr, "go-http: %v\n", err)
		os.Exit(1)
	}
}
