// Command child is the process testproc's tests start. It prints its arguments and TESTPROC_GREETING, then, by its
// first argument: "serve ADDR" answers HTTP on ADDR until SIGTERM; "ignore-term" ignores SIGTERM and sleeps;
// "exit" exits with status 3.
package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	fmt.Printf("child %s greeting=%s\n", strings.Join(os.Args[1:], " "), os.Getenv("TESTPROC_GREETING"))
	if len(os.Args) < 2 {
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
		defer stop()
		ln, err := net.Listen("tcp", os.Args[2])
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, "ok")
		})}
		go func() { _ = srv.Serve(ln) }()
		<-ctx.Done()
		_ = srv.Close()
		fmt.Println("stopped by SIGTERM")
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
		fmt.Println("ignoring SIGTERM")
		time.Sleep(time.Hour)
	case "exit":
		os.Exit(3)
	default:
		os.Exit(2)
	}
}
