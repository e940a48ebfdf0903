// Command secretapp is the test image of gantry's secrets tests. It does
// what a careless app does: at start it prints every secret it can read
// under /run/secrets to its log, value and all, so that the tests can prove
// gantry masks the value wherever it shows a container's log. On
// 127.0.0.1:8080 it answers GET /stat?path=P with what the container sees
// of a secret file (mode, owner, filesystem, whether it can be written)
// and GET /healthz with 200, or 500 in mode unhealthy. `secretapp check`
// is its HEALTHCHECK (FROM scratch has no curl).
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// mode is set at build time: -ldflags "-X main.mode=unhealthy".
var mode = "healthy"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "check" {
		c := &http.Client{Timeout: 3 * time.Second}
		resp, err := c.Get("http://127.0.0.1:8080/healthz")
		if err != nil || resp.StatusCode != http.StatusOK {
			os.Exit(1)
		}
		os.Exit(0)
	}
	files, _ := filepath.Glob("/run/secrets/*")
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			fmt.Fprintf(os.Stderr, "secretapp: %s=%s\n", filepath.Base(f), strings.TrimSpace(string(b)))
		}
	}
	fmt.Fprintf(os.Stderr, "secretapp: mode=%s uid=%d\n", mode, os.Getuid())
	http.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if mode == "unhealthy" {
			http.Error(w, "unhealthy (mode unhealthy)", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	http.HandleFunc("GET /stat", stat)
	srv := &http.Server{Addr: ":8080", ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintln(os.Stderr, srv.ListenAndServe())
	os.Exit(1)
}

// Stat is what the container sees of a secret file.
type Stat struct {
	Mode     string `json:"mode"`
	UID      uint32 `json:"uid"`
	GID      uint32 `json:"gid"`
	SHA256   string `json:"sha256,omitempty"`
	ReadErr  string `json:"read_error,omitempty"`
	WriteErr string `json:"write_error,omitempty"`
	// FSType is the filesystem of the mount at the path, from
	// /proc/self/mountinfo: the host's filesystem behind a bind mount.
	FSType string `json:"fs_type"`
	// MountRO says whether the mount is read-only.
	MountRO bool `json:"mount_ro"`
}

func stat(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Query().Get("path")
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	out := Stat{Mode: fmt.Sprintf("%04o", st.Mode&0o7777), UID: st.Uid, GID: st.Gid}
	if b, err := os.ReadFile(p); err == nil {
		sum := sha256.Sum256(b)
		out.SHA256 = hex.EncodeToString(sum[:])
	} else {
		out.ReadErr = err.Error()
	}
	if f, err := os.OpenFile(p, os.O_WRONLY, 0); err == nil {
		f.Close()
	} else {
		out.WriteErr = err.Error()
	}
	out.FSType, out.MountRO = mountOf(p)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(out)
}

// mountOf reads /proc/self/mountinfo for the mount at p.
func mountOf(p string) (string, bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields, after := strings.Fields(pre), strings.Fields(post)
		if !ok || len(fields) < 6 || len(after) < 1 || fields[4] != p {
			continue
		}
		ro := false
		for _, o := range strings.Split(fields[5], ",") {
			ro = ro || o == "ro"
		}
		return after[0], ro
	}
	return "", false
}
