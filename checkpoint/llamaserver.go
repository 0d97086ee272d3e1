package checkpoint

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"vtune/backend"
)

// ErrNoLlamaServer is returned when Options.LlamaServer is empty and PATH has no llama-server.
var ErrNoLlamaServer = errors.New("no llama-server on PATH: install llama.cpp (it ships llama-server) or name the binary in checkpoint.Options.LlamaServer")

// launcher runs llama-server: the command Options.LlamaServer names (a path, or a name looked up on
// PATH), else llama-server on PATH. It never installs anything.
type launcher struct {
	path string
}

func findLlamaServer(bin string) (*launcher, error) {
	if bin == "" {
		p, err := exec.LookPath("llama-server")
		if err != nil {
			return nil, ErrNoLlamaServer
		}
		return &launcher{path: p}, nil
	}
	p, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("checkpoint.Options.LlamaServer %s: %w", bin, err)
	}
	return &launcher{path: p}, nil
}

// openLlamaServer starts a llama-server for the checkpoint (with --lora for an adapter) on a free
// loopback port and stops it on Close.
func openLlamaServer(ctx context.Context, m *Model, opt Options, ck, base *files) error {
	l, err := findLlamaServer(opt.LlamaServer)
	if err != nil {
		return err
	}
	model, lora := ck.gguf, ""
	if ck.adapter() {
		model, lora = base.gguf, ck.gguf
	}
	args := []string{"-m", model, "--host", "127.0.0.1", "-a", "checkpoint", "-np", strconv.Itoa(max(opt.Slots, 1)), "-lv", "4"}
	if lora != "" {
		args = append(args, "--lora", lora)
	}
	logf, err := os.CreateTemp(opt.TempDir, "vtune-llama-server-*.log")
	if err != nil {
		return err
	}
	logf.Close()
	m.onClose(func(context.Context) error { return os.Remove(logf.Name()) })

	var url string
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		url = "http://127.0.0.1:" + strconv.Itoa(port)
		stop, exited, err := l.start(append(args, "--port", strconv.Itoa(port)), logf.Name())
		if err != nil {
			return err
		}
		m.onClose(stop)
		err = waitHealthy(ctx, url, exited)
		if err == nil {
			break
		}
		stop(context.Background())
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log := tail(logf.Name(), 4000)
		if attempt < 4 && strings.Contains(log, "bind") {
			continue // another process took the port first
		}
		if e := loadError(opt.Path, causeLine(log)); e != nil {
			return e
		}
		return &backend.Error{Op: "llama-server start", URL: url, Err: fmt.Errorf("%v: %s", err, lastLines(log, 3))}
	}

	u, err := neturl.Parse(url)
	if err != nil {
		return err
	}
	b, err := backend.NewLlamaCpp(u, "checkpoint", opt.HTTPClient)
	if err != nil {
		return err
	}
	m.Backend, m.Name = b, "checkpoint"
	m.Provenance.Server = "llamacpp"
	var props struct {
		BuildInfo string `json:"build_info"`
	}
	if err := getJSON(ctx, url+"/props", &props); err == nil {
		m.Provenance.ServerVersion = props.BuildInfo
	}
	m.Provenance.Placement, m.Provenance.Offload = llamaPlacement(tail(logf.Name(), 1<<20))
	return nil
}

// start runs llama-server with args, its output going to log. stop ends it (SIGTERM, then SIGKILL
// after 10 s, each to its process group, so that a wrapper's children go too) and waits; exited is
// closed when the process ends by itself.
func (l *launcher) start(args []string, log string) (stop func(context.Context) error, exited chan struct{}, err error) {
	out, err := os.OpenFile(log, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return nil, nil, err
	}
	defer out.Close()
	cmd := exec.Command(l.path, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = serverAttrs()
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting llama-server: %w", err)
	}
	exited = make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	done := false
	stop = func(ctx context.Context) error {
		if done {
			return nil
		}
		done = true
		signalServer(cmd.Process, false)
		select {
		case <-exited:
			return nil
		case <-time.After(10 * time.Second):
		case <-ctx.Done():
		}
		signalServer(cmd.Process, true)
		<-exited
		return nil
	}
	return stop, exited, nil
}

// waitHealthy waits until the server answers /health with 200 (it answers 503 while loading).
func waitHealthy(ctx context.Context, url string, exited chan struct{}) error {
	deadline := time.After(5 * time.Minute)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				// A server that lost the port race exits while another answers: check ours lives.
				select {
				case <-exited:
					return errors.New("llama-server exited")
				default:
					return nil
				}
			}
		}
		select {
		case <-exited:
			return errors.New("llama-server exited during startup")
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline:
			return errors.New("llama-server did not become ready within 5 minutes")
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if st, err := f.Stat(); err == nil && st.Size() > n {
		f.Seek(st.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

func lastLines(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

var (
	offloadRE = regexp.MustCompile(`offloaded (\d+)/(\d+) layers to GPU`)
	bufferRE  = regexp.MustCompile(`load_tensors:\s+(\S+) model buffer size =\s+([\d.]+ \w+)`)
)

// llamaPlacement reads where the weights went from llama-server's load log (with -lv 4 it prints
// each device's model buffer and, with a GPU, how many layers it offloaded); the server's
// properties endpoint does not say.
func llamaPlacement(log string) (placement, offload string) {
	var bufs []string
	gpu := false
	for _, m := range bufferRE.FindAllStringSubmatch(log, -1) {
		bufs = append(bufs, m[1]+" "+m[2])
		gpu = gpu || !strings.HasPrefix(m[1], "CPU")
	}
	placement = "CPU"
	if gpu {
		placement = "GPU"
	}
	if m := offloadRE.FindStringSubmatch(log); m != nil {
		offload = m[0]
		if m[1] == "0" {
			placement = "CPU"
		} else if m[1] != m[2] {
			placement = "GPU and CPU"
		}
	}
	if len(bufs) > 0 {
		if offload != "" {
			offload += "; "
		}
		offload += "model buffers: " + strings.Join(bufs, ", ")
	}
	if len(bufs) == 0 && offload == "" {
		return "", ""
	}
	return placement, offload
}

func getJSON(ctx context.Context, url string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return jsonDecode(resp.Body, out)
}

func jsonDecode(r io.Reader, out any) error { return json.NewDecoder(r).Decode(out) }

// causeLine picks the line of a llama-server log that says why loading failed: the first error
// line that names a cause, else the last lines.
func causeLine(log string) string {
	for _, l := range strings.Split(log, "\n") {
		low := strings.ToLower(l)
		if strings.Contains(low, "unknown model architecture") || strings.Contains(low, "out of memory") ||
			strings.Contains(low, "failed to allocate") || strings.Contains(low, "not enough memory") {
			return strings.TrimSpace(l)
		}
	}
	return lastLines(log, 3)
}
