package registry

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// With anonymous pulls, basic auth alone cannot serve the Docker engine:
// the engine pings /v2/ without credentials and either gets a challenge, and
// then refuses to go on without credentials ("no basic auth credentials"),
// or gets a 200, and then never sends the credentials it has, so its pushes
// fail. The registry token flow serves both: /v2/ answers with a Bearer
// challenge, the client asks the token endpoint for a token, with its user's
// basic credentials if it has them and without otherwise, and sends the
// token with every request. gantry's tokens are its own: HMAC-signed with a
// key that lives as long as the process, naming the user ("" for an
// anonymous puller), valid for tokenTTL.

const (
	tokenPath = "/v2/token"
	tokenTTL  = 10 * time.Minute
)

type tokenClaims struct {
	User    string `json:"u"`
	Expires int64  `json:"e"`
}

type tokenSigner struct{ key []byte }

func newTokenSigner() tokenSigner {
	k := make([]byte, 32)
	rand.Read(k)
	return tokenSigner{key: k}
}

func (s tokenSigner) sign(user string, now time.Time) string {
	b, _ := json.Marshal(tokenClaims{User: user, Expires: now.Add(tokenTTL).Unix()})
	payload := base64.RawURLEncoding.EncodeToString(b)
	return payload + "." + s.mac(payload)
}

func (s tokenSigner) mac(payload string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// verify returns the token's user and whether the token is valid.
func (s tokenSigner) verify(tok string, now time.Time) (user string, ok bool) {
	payload, sig, found := strings.Cut(tok, ".")
	if !found || !hmac.Equal([]byte(sig), []byte(s.mac(payload))) {
		return "", false
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return "", false
	}
	var c tokenClaims
	if json.Unmarshal(b, &c) != nil || now.Unix() > c.Expires {
		return "", false
	}
	return c.User, true
}

// serveToken is the token endpoint: a user's token for valid basic
// credentials, an anonymous (pull-only) token without credentials.
func (r *Registry) serveToken(w http.ResponseWriter, req *http.Request) {
	user := ""
	if name, password, ok := req.BasicAuth(); ok {
		if !r.users.check(name, password) {
			r.log.Warn("registry: wrong credentials", "user", name, "remote", req.RemoteAddr, "path", req.URL.Path)
			w.Header().Set("WWW-Authenticate", basicChallenge(r.opts.Realm))
			writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "wrong user name or password", nil)
			return
		}
		user = name
	}
	now := time.Now()
	tok := r.tokens.sign(user, now)
	b, _ := json.Marshal(map[string]any{
		"token": tok, "access_token": tok,
		"expires_in": int(tokenTTL.Seconds()), "issued_at": now.UTC().Format(time.RFC3339),
	})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}

func basicChallenge(realm string) string { return "Basic realm=\"" + realm + "\"" }

func (r *Registry) bearerChallenge(req *http.Request) string {
	scheme := "http"
	if req.TLS != nil || req.Header.Get("X-Forwarded-Proto") == "https" {
		scheme = "https"
	}
	return `Bearer realm="` + scheme + "://" + req.Host + tokenPath + `",service="` + r.opts.Realm + `"`
}
