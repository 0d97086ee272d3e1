package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
)

// client sends JSON requests to one server and decodes JSON answers: the one HTTP path of every
// backend. It holds no state beyond its configuration, so it is safe for concurrent use as its
// http.Client is.
type client struct {
	base   *url.URL     // the server, as errors name it
	http   *http.Client // never nil
	name   string       // the backend, as errors name it: "llama.cpp", "openai", "ollama"
	header http.Header  // sent with every request (an API key); may be nil
	// sign, where set, is called on every request just before it is sent: Ollama signs each
	// request to a hosted server with the user's key and the time.
	sign func(*http.Request) error
}

func newClient(name string, base *url.URL, hc *http.Client, header http.Header) *client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &client{base: base, http: hc, name: name, header: header}
}

// url returns the endpoint at path below base, e.g. url("completion").
func (c *client) url(path string) *url.URL { return c.base.JoinPath(path) }

// do sends in as JSON (GET when in is nil) to endpoint and decodes the answer into out. Failures
// of the conversation become *Error, with an *HTTPError inside for a non-2xx answer;
// cancellation is returned as it is, so callers can tell it apart.
func (c *client) do(ctx context.Context, op string, endpoint *url.URL, in, out any) error {
	op = c.name + " " + op
	base := c.base.String()
	method, body := http.MethodGet, io.Reader(nil)
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s: encoding request: %w", op, err)
		}
		method, body = http.MethodPost, bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, endpoint.String(), body)
	if err != nil {
		return &Error{Op: op, URL: base, Err: err}
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.sign != nil {
		if err := c.sign(req); err != nil {
			return &Error{Op: op, URL: base, Err: err}
		}
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ue *url.Error
		if errors.As(err, &ue) && ue.Timeout() {
			return &Error{Op: op, URL: base, Err: fmt.Errorf("no answer in time to %s %s: %v", method, endpoint, ue.Err)}
		}
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return &Error{Op: op, URL: base, Err: fmt.Errorf("cannot reach the server: %v (is it running?)", err)}
	}
	defer resp.Body.Close()
	buf := answers.Get().(*bytes.Buffer)
	defer putAnswer(buf)
	_, err = buf.ReadFrom(resp.Body)
	data := buf.Bytes() // nothing keeps it: decoding and error messages copy what they use
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &Error{Op: op, URL: base, Err: fmt.Errorf("%s %s: reading answer: %w", method, endpoint, err)}
	}
	if resp.StatusCode/100 != 2 {
		return &Error{Op: op, URL: base, Err: &HTTPError{Method: method, URL: endpoint.String(), StatusCode: resp.StatusCode, Message: serverMessage(data)}}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &Error{Op: op, URL: base, Err: fmt.Errorf("%s %s: bad answer: %v: %.200q", method, endpoint, err, data)}
	}
	return nil
}

// answers holds the buffers that answers are read into. An answer is decoded and dropped at once,
// so one buffer can serve request after request (sync.Pool keeps that safe across goroutines)
// instead of each request growing its own from nothing.
var answers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooled: a buffer grown past this by one unusual answer goes to the collector rather than
// staying in memory for the small answers after it.
const maxPooled = 1 << 20

func putAnswer(b *bytes.Buffer) {
	if b.Cap() <= maxPooled {
		b.Reset()
		answers.Put(b)
	}
}

// HTTPError is a server's non-2xx answer. It sits inside an *Error so callers can branch on the
// status (a missing endpoint, a missing model) without parsing messages.
type HTTPError struct {
	Method     string
	URL        string
	StatusCode int
	Message    string // the server's own message, where it gave one
}

func (e *HTTPError) Error() string {
	msg := fmt.Sprintf("%s %s: HTTP %d %s", e.Method, e.URL, e.StatusCode, http.StatusText(e.StatusCode))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// statusOf returns the HTTP status of err's server answer, or 0 when it has none.
func statusOf(err error) int {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.StatusCode
	}
	return 0
}

// serverMessage pulls the message out of the error bodies that llama-server, OpenAI, vLLM and
// Ollama send ({"error":{"message":..}} or {"error":".."} or {"message":..}); otherwise the
// start of the body.
func serverMessage(data []byte) string {
	var v struct {
		Error   json.RawMessage `json:"error"`
		Message string          `json:"message"`
	}
	if json.Unmarshal(data, &v) == nil {
		var s string
		var o struct {
			Message string `json:"message"`
		}
		switch {
		case json.Unmarshal(v.Error, &s) == nil && s != "":
			return s
		case json.Unmarshal(v.Error, &o) == nil && o.Message != "":
			return o.Message
		case v.Message != "":
			return v.Message
		}
	}
	return oneLine(string(data), 200)
}

// checkURL refuses a base URL that is not absolute http(s); example is shown in the message.
func checkURL(kind string, u *url.URL, example string) error {
	if u == nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		s := ""
		if u != nil {
			s = u.String()
		}
		return fmt.Errorf("bad %s URL %q: want e.g. %s", kind, s, example)
	}
	return nil
}
