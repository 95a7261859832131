package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PGServer is a PostgreSQL server a test runs itself, from the binaries scripts/pgbin
// provides, in a directory of its own: for tests that need a given major version or several
// servers (a primary and its standby). It trusts every local connection of the superuser
// "procon" and listens on loopback only. The test's cleanup stops it (immediate) and removes
// its files; its log is printed if the test failed.
type PGServer struct {
	Name string
	Bin  string // bin directory
	Dir  string // data directory
	Port int

	root string
}

// PGBin returns the bin directory of PostgreSQL major, skipping the test with scripts/pgbin's
// reason when it cannot provide one (no network for the first download, say).
func PGBin(t testing.TB, major int) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(RepoRoot(), "scripts", "pgbin"), strconv.Itoa(major)).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		if required() {
			t.Fatalf("scripts/pgbin %d: %s", major, msg)
		}
		t.Skipf("no PostgreSQL %d binaries: scripts/pgbin %d: %s", major, major, msg)
	}
	return strings.TrimSpace(string(out))
}

// PGRoot makes a directory the servers' data directories go in, removed at the end of the
// test. When the test runs as root, the servers run as the postgres OS user (PostgreSQL
// refuses root), so the directory is made traversable and given to it.
func PGRoot(t testing.TB) string {
	t.Helper()
	root, err := os.MkdirTemp("", "procon-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(root) })
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	chownToPostgres(t, root)
	return root
}

// InitPG runs initdb for a server called name under root, with conf appended to its
// postgresql.conf (port, listen_addresses and the socket directory are set here).
func InitPG(t testing.TB, bin, root, name, conf string) *PGServer {
	t.Helper()
	s := &PGServer{Name: name, Bin: bin, Dir: filepath.Join(root, name), Port: freePGPort(t), root: root}
	s.run(t, "initdb", "-D", s.Dir, "-U", "procon", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	s.AppendConf(t, conf)
	t.Cleanup(func() { s.cleanup(t) })
	return s
}

// CopyTo makes a server called name from a cold copy of this one's data directory (which
// must be stopped cleanly), on a port of its own.
func (s *PGServer) CopyTo(t testing.TB, name string) *PGServer {
	t.Helper()
	c := &PGServer{Name: name, Bin: s.Bin, Dir: filepath.Join(s.root, name), Port: freePGPort(t), root: s.root}
	if out, err := exec.Command("cp", "-a", s.Dir, c.Dir).CombinedOutput(); err != nil {
		t.Fatalf("copy %s to %s: %v: %s", s.Dir, c.Dir, err, out)
	}
	for _, f := range []string{"postmaster.pid", "log"} {
		_ = os.RemoveAll(filepath.Join(c.Dir, f))
	}
	c.AppendConf(t, "")
	t.Cleanup(func() { c.cleanup(t) })
	return c
}

// AppendConf appends lines to postgresql.conf, after the port and socket settings.
func (s *PGServer) AppendConf(t testing.TB, conf string) {
	t.Helper()
	base := fmt.Sprintf("\nport = %d\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n", s.Port, s.Dir)
	s.WriteFile(t, "postgresql.conf", base+conf+"\n", true)
}

// WriteFile writes (or appends to) a file of the data directory, owned by the server's user.
func (s *PGServer) WriteFile(t testing.TB, name, text string, appendTo bool) {
	t.Helper()
	flags := os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	if appendTo {
		flags = os.O_CREATE | os.O_WRONLY | os.O_APPEND
	}
	path := filepath.Join(s.Dir, name)
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	chownToPostgres(t, path)
}

// Start starts the server and waits until it accepts connections (a standby: until it
// accepts read-only ones).
func (s *PGServer) Start(t testing.TB) {
	t.Helper()
	s.run(t, "pg_ctl", "-D", s.Dir, "-l", s.logPath(), "-w", "-t", "60", "start")
}

// Stop stops the server: mode fast for a clean shutdown, immediate for a crash (no
// checkpoint, the WAL not yet sent to a standby lost with it).
func (s *PGServer) Stop(t testing.TB, mode string) {
	t.Helper()
	s.run(t, "pg_ctl", "-D", s.Dir, "-m", mode, "-w", "stop")
}

// Promote ends a standby's recovery and waits until it accepts writes.
func (s *PGServer) Promote(t testing.TB) {
	t.Helper()
	s.run(t, "pg_ctl", "-D", s.Dir, "-w", "-t", "60", "promote")
}

// Addr is the server's host:port.
func (s *PGServer) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// DSN is a DSN of the superuser for database db.
func (s *PGServer) DSN(db string) string {
	return fmt.Sprintf("postgres://procon@%s/%s?sslmode=disable", s.Addr(), db)
}

// Conn connects to database db as the superuser; closed at the end of the test.
func (s *PGServer) Conn(t testing.TB, db string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN(db))
	if err != nil {
		t.Fatalf("connect to %s: %v", s.Name, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

// Log is the server's log so far.
func (s *PGServer) Log() string {
	b, _ := os.ReadFile(s.logPath())
	return string(b)
}

func (s *PGServer) logPath() string { return filepath.Join(s.root, s.Name+".log") }

func (s *PGServer) cleanup(t testing.TB) {
	// An error only says it was not running.
	_ = s.command("pg_ctl", "-D", s.Dir, "-m", "immediate", "-w", "stop").Run()
	if t.Failed() {
		t.Logf("PostgreSQL %s log:\n%s", s.Name, LastLines(s.Log(), 60))
	}
}

func (s *PGServer) run(t testing.TB, tool string, args ...string) {
	t.Helper()
	if out, err := s.command(tool, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s\nlog:\n%s", tool, strings.Join(args, " "), err, out, LastLines(s.Log(), 30))
	}
}

// command runs one of the server's tools, as the postgres OS user when the test runs as root.
func (s *PGServer) command(tool string, args ...string) *exec.Cmd {
	path := filepath.Join(s.Bin, tool)
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

// chownToPostgres gives path to the postgres OS user when the test runs as root.
func chownToPostgres(t testing.TB, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		return
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("running as root needs a postgres OS user to run the server: %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

func freePGPort(t testing.TB) int {
	t.Helper()
	_, port, err := net.SplitHostPort(FreeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(port)
	return n
}
