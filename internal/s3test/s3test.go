package s3test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/postern-dev/postern/internal/storage"
	"github.com/postern-dev/postern/internal/testenv"
)

// Version is the versitygw release the tests run.
const Version = "v1.8.0"

const module = "github.com/versity/versitygw/cmd/versitygw"

// Credentials of the server's root account, and its region.
const (
	AccessKey = "postern-test-access"
	SecretKey = "postern-test-secret-0123456789abcdef"
	Region    = "us-east-1"
)

// Server is a running (or stopped) versitygw.
type Server struct {
	// Endpoint is the base URL, "http://127.0.0.1:PORT".
	Endpoint string
	// Bucket exists and is empty at Start.
	Bucket string
	// Dir is the posix backend's root (a bucket is the directory
	// Dir/Bucket).
	Dir string

	bin  string
	port int
	logs *testenv.Logs

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// Start builds (once) and starts versitygw with a new bucket. It is stopped
// at the end of the test.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Binary(t)
	s := &Server{
		Bucket: "postern-test",
		Dir:    t.TempDir(),
		bin:    bin,
		logs:   testenv.NewLogs(t, "versitygw"),
	}
	t.Cleanup(s.Stop)
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if s.port, err = freePort(); err != nil {
			break
		}
		s.Endpoint = "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
		if err = s.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("s3test: %v", err)
	}
	if err := s.createBucket(context.Background()); err != nil {
		t.Fatalf("s3test: %v", err)
	}
	return s
}

// S3Config returns a storage configuration for the bucket under prefix.
func (s *Server) S3Config(prefix string) storage.S3Config {
	return storage.S3Config{
		Bucket:          s.Bucket,
		Prefix:          prefix,
		Region:          Region,
		Endpoint:        s.Endpoint,
		PathStyle:       true,
		AccessKeyID:     AccessKey,
		SecretAccessKey: SecretKey,
		MaxAttempts:     1,
	}
}

// Stop stops the server (SIGTERM, then SIGKILL). The data stays; Start
// brings it back. Stopping a stopped server does nothing.
func (s *Server) Stop() { s.stop(syscall.SIGTERM) }

// Kill stops the server with SIGKILL, as a crash would.
func (s *Server) Kill() { s.stop(syscall.SIGKILL) }

func (s *Server) stop(sig syscall.Signal) {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Start restarts a stopped server on the same port and data directory.
func (s *Server) Start(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatalf("s3test: restart: %v", err)
	}
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return errors.New("already running")
	}
	fmt.Fprintf(s.logs, "--- start %s on port %d\n", s.bin, s.port)
	cmd := exec.Command(s.bin,
		"--port", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		"--region", Region,
		"--health", "/health",
		"posix", s.Dir)
	// Credentials go through the environment so they are not in ps output;
	// nothing else is inherited (versitygw reads many VGW_* variables).
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + s.Dir,
		"ROOT_ACCESS_KEY=" + AccessKey,
		"ROOT_SECRET_KEY=" + SecretKey,
	}
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start versitygw: %w", err)
	}
	done := make(chan struct{})
	go func() {
		err := cmd.Wait()
		fmt.Fprintf(s.logs, "--- versitygw exited: %v\n", err)
		close(done)
	}()
	health := s.Endpoint + "/health"
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("versitygw exited during startup:\n%s", s.logs.String())
		default:
		}
		if resp, err := http.Get(health); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			<-done
			return fmt.Errorf("versitygw not ready at %s after 15s:\n%s", health, s.logs.String())
		}
		time.Sleep(25 * time.Millisecond)
	}
	s.cmd, s.done = cmd, done
	return nil
}

func (s *Server) createBucket(ctx context.Context) error {
	c := s3.New(s3.Options{
		Region:       Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(AccessKey, SecretKey, ""),
	})
	if _, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.Bucket)}); err != nil {
		return fmt.Errorf("create bucket %s: %w", s.Bucket, err)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary returns the path of the versitygw binary, building it on first
// use (see the package documentation). When it cannot be had the test is
// skipped, or failed under testenv.Strict.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("POSTERN_VERSITYGW"); p != "" {
		return p
	}
	buildOnce.Do(func() { buildPath, buildErr = build() })
	if buildErr != nil {
		msg := fmt.Sprintf("s3test: versitygw %s unavailable: %v\nhint: check access to the Go module proxy, or set POSTERN_VERSITYGW to a versitygw binary", Version, buildErr)
		if testenv.Strict() {
			t.Fatalf("%s (CI/POSTERN_REQUIRE_E2E set: failing instead of skipping)", msg)
		}
		t.Skip(msg)
	}
	return buildPath
}

func build() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find cache dir: %w", err)
	}
	dir := filepath.Join(cache, "postern", "versitygw-"+Version)
	bin := filepath.Join(dir, "versitygw")
	if isExec(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Serialise builds between concurrently running test processes.
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", dir, err)
	}
	if isExec(bin) {
		return bin, nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("go toolchain not found: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command(goBin, "install", "-trimpath", module+"@"+Version)
	cmd.Dir = tmp // outside any module: the pinned version's own go.mod decides
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w\n%s", module, Version, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, "versitygw"), bin); err != nil {
		return "", err
	}
	return bin, nil
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}
