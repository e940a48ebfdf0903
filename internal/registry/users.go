package registry

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// validUser is what a user name may hold: no colon (the file's separator),
// no spaces or control characters.
var validUser = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// BcryptCost is the cost of the hashes AddUser writes.
const BcryptCost = 12

// AddUser sets NAME's password in the htpasswd-style file at path, creating
// it (mode 0600) if needed and replacing NAME's line if NAME is there. It
// returns whether NAME was already there. The file is replaced atomically,
// so a running registry never reads half of it.
func AddUser(path, name string, password []byte) (replaced bool, err error) {
	if !validUser.MatchString(name) {
		return false, fmt.Errorf("%w: user name %q: use letters, digits and . _ @ - (64 at most), starting with a letter or digit", ErrInput, name)
	}
	if len(password) == 0 {
		return false, fmt.Errorf("%w: empty password for %s", ErrInput, name)
	}
	if len(password) > 72 {
		return false, fmt.Errorf("%w: the password for %s is %d bytes; bcrypt uses 72 at most", ErrInput, name, len(password))
	}
	hash, err := bcrypt.GenerateFromPassword(password, BcryptCost)
	if err != nil {
		return false, err
	}
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return false, fmt.Errorf("users file: %w", err)
	}
	var out bytes.Buffer
	for _, line := range strings.Split(string(old), "\n") {
		if line == "" {
			continue
		}
		if n, _, ok := strings.Cut(line, ":"); ok && n == name {
			replaced = true
			continue
		}
		out.WriteString(line + "\n")
	}
	fmt.Fprintf(&out, "%s:%s\n", name, hash)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, fmt.Errorf("users file: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".users-*")
	if err != nil {
		return false, fmt.Errorf("users file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(out.Bytes()); err != nil {
		tmp.Close()
		return false, fmt.Errorf("users file: %w", err)
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return false, err
	}
	if err := tmp.Close(); err != nil {
		return false, err
	}
	return replaced, os.Rename(tmp.Name(), path)
}

// users holds the users file, read again when it changes, so that
// gantry registry user add takes effect without a restart.
type users struct {
	path string

	mu      sync.Mutex
	modTime time.Time
	size    int64
	hashes  map[string][]byte
	// verified caches a digest of the credentials that passed bcrypt, per
	// user, until the file changes: bcrypt takes tens of milliseconds by
	// design, and a client sends credentials with every request.
	verified map[string][32]byte
}

// dummyHash is compared against for unknown users, so that the answer
// takes as long whether or not the user exists: it has the cost of real
// users' hashes, and is made on first use, not at every gantry start.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("gantry-unknown-user"), BcryptCost)
	return h
})

func loadUsers(path string) (*users, error) {
	u := &users{path: path}
	if err := u.reload(); err != nil {
		return nil, err
	}
	return u, nil
}

// reload reads the file if it changed since the last read; the caller holds
// u.mu or is the constructor.
func (u *users) reload() error {
	st, err := os.Stat(u.path)
	if err != nil {
		if os.IsNotExist(err) {
			return fmt.Errorf("%w: users file %s does not exist; create it with gantry registry user add NAME --users %s", ErrInput, u.path, u.path)
		}
		return fmt.Errorf("users file: %w", err)
	}
	if u.hashes != nil && st.ModTime().Equal(u.modTime) && st.Size() == u.size {
		return nil
	}
	f, err := os.Open(u.path)
	if err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	defer f.Close()
	hashes := map[string][]byte{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, hash, ok := strings.Cut(line, ":")
		if !ok || name == "" {
			return fmt.Errorf("%w: users file %s line %d: want NAME:BCRYPT-HASH", ErrInput, u.path, n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return fmt.Errorf("%w: users file %s line %d (%s): not a bcrypt hash; write users with gantry registry user add", ErrInput, u.path, n, name)
		}
		hashes[name] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("users file: %w", err)
	}
	u.hashes, u.modTime, u.size = hashes, st.ModTime(), st.Size()
	u.verified = map[string][32]byte{}
	return nil
}

// check reports whether name and password are a user's. A users file that
// became unreadable keeps the last good one in force.
func (u *users) check(name, password string) bool {
	u.mu.Lock()
	_ = u.reload()
	hash, ok := u.hashes[name]
	sum := sha256.Sum256([]byte(name + "\x00" + password))
	if v, hit := u.verified[name]; ok && hit && subtle.ConstantTimeCompare(v[:], sum[:]) == 1 {
		u.mu.Unlock()
		return true
	}
	u.mu.Unlock()
	if !ok {
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(password))
		return false
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return false
	}
	u.mu.Lock()
	if u.verified != nil {
		u.verified[name] = sum
	}
	u.mu.Unlock()
	return true
}

// authenticate decides whether req may go on. It answers the request itself
// (401 with a challenge) when not.
func (r *Registry) authenticate(w http.ResponseWriter, req *http.Request) bool {
	if r.users == nil {
		return true
	}
	pull := req.Method == http.MethodGet || req.Method == http.MethodHead
	authz := req.Header.Get("Authorization")
	if tok, ok := strings.CutPrefix(authz, "Bearer "); ok && r.opts.AnonymousPull {
		user, valid := r.tokens.verify(tok, time.Now())
		switch {
		case valid && (user != "" || pull):
			return true
		case valid:
			r.challenge(w, req, "DENIED", "anonymous access is pull only; log in to push or delete")
		default:
			r.challenge(w, req, "UNAUTHORIZED", "invalid or expired token; ask "+tokenPath+" for a new one")
		}
		return false
	}
	if name, password, ok := req.BasicAuth(); ok {
		if r.users.check(name, password) {
			return true
		}
		r.log.Warn("registry: wrong credentials", "user", name, "remote", req.RemoteAddr, "method", req.Method, "path", req.URL.Path)
		r.challenge(w, req, "UNAUTHORIZED", "wrong user name or password")
		return false
	}
	// The base endpoint challenges even with anonymous pulls: that is where
	// a client learns how to authenticate.
	if r.opts.AnonymousPull && pull && !isBase(req.URL.Path) {
		return true
	}
	msg := "authentication required"
	if r.opts.AnonymousPull {
		msg = "authentication required to push or delete; pulls are anonymous"
	}
	r.challenge(w, req, "UNAUTHORIZED", msg)
	return false
}

// challenge answers 401: a Basic challenge, or with anonymous pulls a
// Bearer one (see token.go for why).
func (r *Registry) challenge(w http.ResponseWriter, req *http.Request, code, msg string) {
	if r.opts.AnonymousPull {
		w.Header().Set("WWW-Authenticate", r.bearerChallenge(req))
	} else {
		w.Header().Set("WWW-Authenticate", basicChallenge(r.opts.Realm))
	}
	writeError(w, http.StatusUnauthorized, code, msg, nil)
}

func isBase(p string) bool { return p == "/v2/" || p == "/v2" }
