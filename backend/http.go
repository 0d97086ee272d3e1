package backend

import (
	"errors"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"
)

// DefaultConnectTimeout bounds connecting to a server; DefaultTimeout is how long one request may
// wait for the server's answer: long enough for a server to load a large model on the first
// request, short enough that a server that accepted the connection and went silent ends a run.
const (
	DefaultConnectTimeout = 10 * time.Second
	DefaultTimeout        = 10 * time.Minute
)

// NewHTTPClient returns an HTTP client whose connections give up after connect and whose requests
// give up when the server has not begun to answer after timeout (a non-streaming request's
// answer begins when the server has done the work, so timeout bounds each request). Zero
// durations take the defaults. Clients are safe for concurrent use.
func NewHTTPClient(connect, timeout time.Duration) *http.Client {
	if connect <= 0 {
		connect = DefaultConnectTimeout
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}).DialContext
	t.ResponseHeaderTimeout = timeout
	return &http.Client{Transport: &retrying{next: t, tries: retries, wait: retryWait}}
}

// Transient failures are tried again, up to 3 tries in all: a connection reset or closed before
// the answer began, a 502 or 503 from a proxy or a server still loading. Every request vtune makes is a pure computation, safe to send
// again. A refused connection (no server) or a timeout (already waited) is not retried.
const (
	retries   = 3
	retryWait = 500 * time.Millisecond // doubled after each try
)

// retrying is an http.RoundTripper that retries transient failures with backoff.
type retrying struct {
	next  http.RoundTripper
	tries int
	wait  time.Duration
}

func (r *retrying) RoundTrip(req *http.Request) (*http.Response, error) {
	wait := r.wait
	for try := 1; ; try++ {
		resp, err := r.next.RoundTrip(req)
		if try == r.tries || !transient(resp, err) || (req.Body != nil && req.GetBody == nil) {
			return resp, err
		}
		if resp != nil {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
		}
		select {
		case <-req.Context().Done():
			return nil, req.Context().Err()
		case <-time.After(wait):
		}
		wait *= 2
		if req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
	}
}

// transient reports whether a failure may pass if the request is sent again.
func transient(resp *http.Response, err error) bool {
	if err != nil {
		return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
	}
	return resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable
}

// oneLine makes a server's message fit an error line: white space (an HTML page's newlines
// included) collapsed, tags of an HTML page dropped, cut after about n bytes at a character boundary.
func oneLine(s string, n int) string {
	if strings.HasPrefix(strings.TrimSpace(s), "<") {
		s = htmlTag.ReplaceAllString(s, " ")
	}
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "..."
	}
	return s
}

var htmlTag = regexp.MustCompile(`<[^>]*>`)
