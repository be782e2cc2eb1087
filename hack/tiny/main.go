// Command tiny is the only program in the local stack's container images: the node's pause
// image runs it as /pause, and the test image as sleep and cat, so a Pod's container really
// starts and runs. It picks its role from the name it is called by (like busybox), is static
// (CGO_ENABLED=0) and has no dependencies.
//
// As PID 1 of a container no signal has a default action, so every long-running role handles
// SIGTERM and SIGINT itself and exits at once: a deleted Pod stops without waiting out its
// grace period.
package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if name == "tiny" && len(args) > 0 {
		name, args = args[0], args[1:]
	}
	switch name {
	case "pause":
		os.Exit(pause())
	case "sleep":
		os.Exit(sleep(args))
	case "cat":
		os.Exit(cat(args))
	case "true":
		os.Exit(0)
	default:
		fmt.Fprintf(os.Stderr, "tiny: unknown role %q (pause, sleep, cat, true)\n", name)
		os.Exit(2)
	}
}

// stopped delivers SIGTERM or SIGINT.
func stopped() <-chan os.Signal {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	return c
}

// pause waits for a stop signal and reaps children, as the pause container does for a Pod
// that shares its process namespace.
func pause() int {
	stop := stopped()
	children := make(chan os.Signal, 8)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			return 0
		case <-children:
			for {
				var status syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}

// sleep accepts what coreutils sleep does for one argument: seconds with an optional s, m, h
// or d suffix, or "infinity".
func sleep(args []string) int {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "usage: sleep SECONDS[smhd] | infinity")
		return 2
	}
	stop := stopped()
	arg := strings.ToLower(args[0])
	if arg == "infinity" || arg == "inf" {
		<-stop
		return 0
	}
	unit := time.Second
	switch {
	case strings.HasSuffix(arg, "s"):
		arg = strings.TrimSuffix(arg, "s")
	case strings.HasSuffix(arg, "m"):
		arg, unit = strings.TrimSuffix(arg, "m"), time.Minute
	case strings.HasSuffix(arg, "h"):
		arg, unit = strings.TrimSuffix(arg, "h"), time.Hour
	case strings.HasSuffix(arg, "d"):
		arg, unit = strings.TrimSuffix(arg, "d"), 24*time.Hour
	}
	n, err := strconv.ParseFloat(arg, 64)
	if err != nil || n < 0 {
		fmt.Fprintf(os.Stderr, "sleep: invalid time interval %q\n", args[0])
		return 1
	}
	select {
	case <-time.After(time.Duration(n * float64(unit))):
		return 0
	case <-stop:
		return 0
	}
}

func cat(args []string) int {
	status := 0
	for _, path := range args {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "cat: %v\n", err)
			status = 1
			continue
		}
		if _, err := io.Copy(os.Stdout, f); err != nil {
			fmt.Fprintf(os.Stderr, "cat: %v\n", err)
			status = 1
		}
		f.Close()
	}
	return status
}
