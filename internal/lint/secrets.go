package lint

import (
	"math"
	"regexp"
	"strings"
	"unicode"
)

// Secret detection, shared by GL1001 (ENV and ARG) and GL2005 (a compose
// service's environment): by the variable's name and by the shape of its
// value. A finding never repeats the value.

// secretWords are words that, alone in a variable name, make it a secret:
// DB_PASSWORD, GITHUB_TOKEN, APP_SECRET, AWS_CREDENTIALS.
var secretWords = map[string]bool{
	"password": true, "passwd": true, "passphrase": true, "pwd": true,
	"secret": true, "token": true, "credential": true, "credentials": true,
	"apikey": true, "privatekey": true,
}

// secretPairs are two words that together make a secret: API_KEY,
// PRIVATE_KEY, ACCESS_KEY (AWS_ACCESS_KEY_ID names a credential too),
// SECRET_KEY, AUTH_KEY, ENCRYPTION_KEY, SIGNING_KEY, CLIENT_SECRET.
var secretPairs = map[[2]string]bool{
	{"api", "key"}: true, {"private", "key"}: true, {"access", "key"}: true,
	{"secret", "key"}: true, {"auth", "key"}: true, {"encryption", "key"}: true,
	{"signing", "key"}: true, {"master", "key"}: true, {"account", "key"}: true,
}

// notSecretLast are last words of names that hold something about a secret
// rather than the secret: where it is (DB_PASSWORD_FILE), how long it lives
// (TOKEN_TTL), what it is called (SECRET_NAME).
var notSecretLast = map[string]bool{
	"file": true, "path": true, "dir": true, "name": true, "names": true, "url": true,
	"ttl": true, "timeout": true, "expiry": true, "expires": true, "lifetime": true,
	"length": true, "len": true, "size": true, "header": true, "type": true,
	"endpoint": true, "version": true, "enabled": true, "required": true, "policy": true,
	"prefix": true, "env": true, "var": true, "id": true, "ids": true,
}

// nameWords splits a variable name into lower-case words at _, -, . and
// camelCase boundaries: "dbPassword" and "DB_PASSWORD" both give db, password.
func nameWords(name string) []string {
	var words []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			words = append(words, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	rs := []rune(name)
	for i, r := range rs {
		switch {
		case r == '_' || r == '-' || r == '.':
			flush()
			continue
		case unicode.IsUpper(r) && i > 0 && unicode.IsLower(rs[i-1]):
			flush()
		}
		cur = append(cur, r)
	}
	flush()
	return words
}

// secretName reports whether a variable's name says it holds a secret.
func secretName(name string) bool {
	if strings.EqualFold(name, "PWD") || strings.EqualFold(name, "OLDPWD") {
		return false // the shell's working directory
	}
	w := nameWords(name)
	if len(w) == 0 {
		return false
	}
	// AWS_ACCESS_KEY_ID is a credential even though it ends in id.
	if len(w) >= 3 && w[len(w)-1] == "id" && w[len(w)-2] == "key" && w[len(w)-3] == "access" {
		return true
	}
	if notSecretLast[w[len(w)-1]] {
		return false
	}
	for _, x := range w {
		if x == "public" {
			return false // PUBLIC_KEY, VITE_PUBLIC_TOKEN: meant to be seen
		}
	}
	for i, x := range w {
		if secretWords[x] {
			return true
		}
		if i+1 < len(w) && secretPairs[[2]string{x, w[i+1]}] {
			return true
		}
	}
	return false
}

// valueShapes are credentials recognisable by their form alone.
var valueShapes = []struct {
	what string
	re   *regexp.Regexp
}{
	{"an AWS access key id", regexp.MustCompile(`\b(AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b`)},
	{"a GitHub token", regexp.MustCompile(`\b(gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b`)},
	{"a GitLab token", regexp.MustCompile(`\bglpat-[A-Za-z0-9_-]{20,}\b`)},
	{"a Slack token", regexp.MustCompile(`\bxox[abposr]-[A-Za-z0-9-]{10,}\b`)},
	{"a Stripe secret key", regexp.MustCompile(`\b[sr]k_live_[A-Za-z0-9]{20,}\b`)},
	{"a Google API key", regexp.MustCompile(`\bAIza[0-9A-Za-z_-]{35}\b`)},
	{"a private key", regexp.MustCompile(`-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----`)},
	{"a password in a URL", regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]+:[^/\s@$]+@`)},
}

// secretValue reports whether a value has the shape of a credential, and
// which. Values made of variable references (${TOKEN}) are not secrets in
// themselves: they are judged by name.
func secretValue(v string) (string, bool) {
	v = strings.TrimSpace(v)
	if v == "" || isReference(v) {
		return "", false
	}
	for _, s := range valueShapes {
		if s.re.MatchString(v) {
			return s.what, true
		}
	}
	if highEntropy(v) {
		return "a long random-looking string", true
	}
	return "", false
}

// isReference reports whether a value is only a variable reference.
func isReference(v string) bool {
	return strings.HasPrefix(v, "$") && !strings.ContainsAny(strings.TrimLeft(v, "${"), " ") &&
		(strings.Count(v, "$") == 1)
}

// highEntropy spots a generated key or token: 24 characters or more in one
// word, mixing upper case, lower case and digits, with at least 4.2 bits of
// Shannon entropy per character. Paths, URLs and hex checksums (which are
// public: image digests, GPG fingerprints) do not count.
func highEntropy(v string) bool {
	if len(v) < 24 || len(v) > 512 || strings.ContainsAny(v, " \t\n/\\:") {
		return false
	}
	var upper, lower, digit bool
	for _, r := range v {
		switch {
		case unicode.IsUpper(r):
			upper = true
		case unicode.IsLower(r):
			lower = true
		case unicode.IsDigit(r):
			digit = true
		}
	}
	if !upper || !lower || !digit {
		return false
	}
	return entropy(v) >= 4.2
}

// entropy is the Shannon entropy of s in bits per character.
func entropy(s string) float64 {
	counts := map[rune]int{}
	n := 0
	for _, r := range s {
		counts[r]++
		n++
	}
	var h float64
	for _, c := range counts {
		p := float64(c) / float64(n)
		h -= p * math.Log2(p)
	}
	return h
}
