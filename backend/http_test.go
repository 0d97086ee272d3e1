package backend

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// mustURL parses a URL the test knows to be well formed.
func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// Transient failures (a 503 while the server loads, a connection closed mid-answer) are retried
// with the request body intact; a lasting one comes back after the last try; a 404 at once.
func TestHTTPClientRetries(t *testing.T) {
	var n atomic.Int32
	mode := "503 twice"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		k := n.Add(1)
		switch {
		case mode == "404":
			w.WriteHeader(http.StatusNotFound)
		case mode == "always 502":
			w.WriteHeader(http.StatusBadGateway)
		case mode == "503 twice" && k <= 2:
			w.WriteHeader(http.StatusServiceUnavailable)
		case mode == "close once" && k == 1:
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close() // closed mid-request, no answer
		default:
			io.WriteString(w, "got "+string(body))
		}
	}))
	defer srv.Close()
	c := NewHTTPClient(time.Second, 5*time.Second)
	c.Transport.(*retrying).wait = time.Millisecond
	for _, tc := range []struct {
		mode   string
		status int
		tries  int32
	}{{"503 twice", 200, 3}, {"close once", 200, 2}, {"always 502", 502, 3}, {"404", 404, 1}} {
		mode = tc.mode
		n.Store(0)
		resp, err := c.Post(srv.URL, "text/plain", strings.NewReader("payload"))
		if err != nil {
			t.Fatalf("%s: %v", tc.mode, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || n.Load() != tc.tries || tc.status == 200 && string(b) != "got payload" {
			t.Errorf("%s: status %d after %d requests, body %q; want %d after %d", tc.mode, resp.StatusCode, n.Load(), b, tc.status, tc.tries)
		}
	}
}
