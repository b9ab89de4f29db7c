// Command hello is berth's example web server. It is built into a FROM
// scratch image, so it is also its own toolbox: the subcommands below stand in
// for the shell a scratch image does not have (exec probes, tests).
//
//	hello                 serve HTTP on :8080 (env PORT overrides)
//	hello check URL       exit 0 when URL answers 2xx, 1 otherwise
//	hello getenv NAME     print env NAME; exit 1 when unset
//	hello cat PATH        print the file at PATH
//	hello exit CODE       exit with CODE at once
//	hello memlimit        print the cgroup memory limit in bytes ("max" if none)
//	hello hang            run until SIGKILL, ignoring SIGTERM
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// version is set at build time: -ldflags "-X main.version=v2".
var version = "dev"

func main() {
	if len(os.Args) > 1 {
		os.Exit(runTool(os.Args[1], os.Args[2:], os.Stdout, os.Stderr))
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := serve(logger); err != nil {
		logger.Error("hello failed", "err", err)
		os.Exit(1)
	}
}

// runTool runs one subcommand and returns the process exit code.
func runTool(name string, args []string, stdout, stderr io.Writer) int {
	need := func(n int, usage string) bool {
		if len(args) != n {
			fmt.Fprintf(stderr, "usage: hello %s %s\n", name, usage)
			return false
		}
		return true
	}
	switch name {
	case "check":
		if !need(1, "URL") {
			return 2
		}
		return check(args[0], stderr)
	case "getenv":
		if !need(1, "NAME") {
			return 2
		}
		v, ok := os.LookupEnv(args[0])
		if !ok {
			fmt.Fprintf(stderr, "%s is not set\n", args[0])
			return 1
		}
		fmt.Fprint(stdout, v)
		return 0
	case "cat":
		if !need(1, "PATH") {
			return 2
		}
		b, err := os.ReadFile(args[0])
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		stdout.Write(b)
		return 0
	case "exit":
		if !need(1, "CODE") {
			return 2
		}
		code, err := strconv.Atoi(args[0])
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		return code
	case "memlimit":
		limit, err := memoryLimit()
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprint(stdout, limit)
		return 0
	case "hang":
		// Ignoring SIGTERM makes the runtime's stop grace period observable.
		signal.Ignore(syscall.SIGTERM)
		for {
			// Not select{}: with no other goroutine the runtime would
			// report a deadlock and exit 2.
			time.Sleep(time.Hour)
		}
	default:
		fmt.Fprintf(stderr, "hello: unknown command %q\n", name)
		return 2
	}
}

// check is an exec probe for images without a shell or curl.
func check(url string, stderr io.Writer) int {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fmt.Fprintf(stderr, "%s answered %s\n", url, resp.Status)
		return 1
	}
	return 0
}

// memoryLimit reads the container's memory limit from cgroup v2 or, on hybrid
// and v1 hosts, from the v1 memory controller.
func memoryLimit() (string, error) {
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(p)
		if err == nil {
			return strings.TrimSpace(string(b)), nil
		}
	}
	return "", errors.New("no cgroup memory limit file found")
}

func serve(logger *slog.Logger) error {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: newMux(logger), ReadHeaderTimeout: 10 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("serving", "addr", ln.Addr().String(), "version", version)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Stop accepting, let in-flight requests finish, then exit 0.
	logger.Info("SIGTERM: draining")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	return srv.Shutdown(shutdownCtx)
}

func newMux(logger *slog.Logger) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		host, _ := os.Hostname()
		fmt.Fprintf(w, "hello %s pod=%s hostname=%s\n", version, os.Getenv("POD_NAME"), host)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if reason := notReady(); reason != "" {
			http.Error(w, reason, http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, r *http.Request) {
		v, ok := os.LookupEnv(r.URL.Query().Get("name"))
		if !ok {
			http.Error(w, "not set", http.StatusNotFound)
			return
		}
		fmt.Fprint(w, v)
	})
	mux.HandleFunc("GET /file", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(r.URL.Query().Get("path"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		w.Write(b)
	})
	mux.HandleFunc("/crash", func(w http.ResponseWriter, r *http.Request) {
		logger.Info("crash requested")
		os.Exit(1)
	})
	return mux
}

// notReady returns why the server is not ready, or "" when it is.
func notReady() string {
	if os.Getenv("READY_FAIL") == "1" {
		return "READY_FAIL=1"
	}
	if f := os.Getenv("READY_FILE"); f != "" {
		if _, err := os.Stat(f); err != nil {
			return "ready file missing: " + f
		}
	}
	return ""
}
