package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
)

// encoded is a response body that is JSON already (with the newline
// json.Encoder ends a value with): written as it is, with its length.
// encoding/json would validate and compact a json.RawMessage again on every
// request, which for a status of 100 services, or a history with their
// results, was most of the request's CPU. (Gzip was tried for the large
// ones, made once per body: on loopback the client's gunzip cost more than
// the bytes it saved.)
type encoded []byte

func encode(v any) (encoded, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

func (e encoded) write(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(e)))
	w.WriteHeader(status)
	w.Write(e)
}

// joinEncoded is the JSON array of bodies encoded one by one.
func joinEncoded(vs []encoded) encoded {
	n := 3
	for _, v := range vs {
		n += len(v) + 1
	}
	out := make(encoded, 0, n)
	out = append(out, '[')
	for i, v := range vs {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, bytes.TrimSuffix(v, []byte("\n"))...)
	}
	return append(out, ']', '\n')
}

// maxCachedAnswers bounds a listCache: the keys are the lists clients poll
// (an environment's history, the newest audit events), so a few are in use
// at a time; a flood of distinct queries only empties the cache.
const maxCachedAnswers = 64

// listCache keeps the encoded answer to each list request (by key: the
// route and its parameters) along with the version of the record it was
// read from. Clients poll lists far more often than the record changes;
// while the version (a cheap query of an index) is the same, the rows are
// neither read nor encoded again.
type listCache struct {
	mu sync.Mutex
	m  map[string]cachedAnswer
}

type cachedAnswer struct {
	version string
	body    encoded
}

// get returns the answer for key at version, built (read and encoded) only
// when the cache holds none for that version.
func (c *listCache) get(key, version string, build func() (any, error)) (encoded, error) {
	c.mu.Lock()
	a, ok := c.m[key]
	c.mu.Unlock()
	if ok && a.version == version {
		return a.body, nil
	}
	v, err := build()
	if err != nil {
		return nil, err
	}
	b, err := encode(v)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCachedAnswers {
		c.m = map[string]cachedAnswer{}
	}
	c.m[key] = cachedAnswer{version: version, body: b}
	c.mu.Unlock()
	return b, nil
}
