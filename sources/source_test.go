package sources

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenPicksTheKind(t *testing.T) {
	plain := t.TempDir()
	worktree := t.TempDir()
	if err := os.Mkdir(filepath.Join(worktree, ".git"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(plain, "file.yaml")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sshAuth := writeSSHTestFiles(t)

	tests := []struct {
		name    string
		spec    Spec
		want    string // "git", "dir" or an error substring
		wantStr string // substring of String()
	}{
		{"https", Spec{Repo: "https://git.example.com/org/deploy.git"}, "git", "https://git.example.com/org/deploy.git (branch main)"},
		{"http with branch and path", Spec{Repo: "http://localhost:3000/deploy", Branch: "prod", Path: "apps/"}, "git", "http://localhost:3000/deploy (branch prod, path apps)"},
		{"git protocol", Spec{Repo: "git://git.example.com/deploy.git"}, "git", "git://git.example.com/deploy.git"},
		{"file URL", Spec{Repo: "file:///srv/deploy.git"}, "git", "file:///srv/deploy.git"},
		{"ssh URL", Spec{Repo: "ssh://git@git.example.com:2222/org/deploy.git", Auth: sshAuth}, "git", "ssh://git@git.example.com:2222/org/deploy.git"},
		{"scp-like", Spec{Repo: "git@github.com:org/deploy.git", Auth: sshAuth}, "git", "git@github.com:org/deploy.git"},
		{"scp-like without known_hosts", Spec{Repo: "git@github.com:org/deploy.git"}, "known_hosts", ""},
		{"ssh without key", Spec{Repo: "ssh://git.example.com/deploy.git", Auth: Auth{KnownHostsFile: sshAuth.KnownHostsFile}}, "private key", ""},
		{"plain folder", Spec{Repo: plain}, "dir", plain},
		{"folder with path", Spec{Repo: plain, Path: "apps"}, "dir", plain + " (path apps)"},
		{"git working tree", Spec{Repo: worktree}, "git", "file://" + worktree},
		{"forced folder", Spec{Repo: "dir://" + worktree}, "dir", worktree},
		{"no cache dir", Spec{Repo: "https://git.example.com/deploy.git", CacheDir: "-"}, "no cache directory", ""},
		{"unsupported scheme", Spec{Repo: "ftp://example.com/deploy"}, "unsupported URL scheme", ""},
		{"missing folder", Spec{Repo: filepath.Join(plain, "missing")}, "no such folder", ""},
		{"a file", Spec{Repo: file}, "not a folder", ""},
		{"empty", Spec{}, "no repository", ""},
		{"path escapes", Spec{Repo: plain, Path: "../etc"}, "leaves the repository root", ""},
		{"bad branch", Spec{Repo: "https://example.com/x.git", Branch: "a..b"}, "invalid branch", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			switch tt.spec.CacheDir {
			case "-":
				tt.spec.CacheDir = ""
			case "":
				tt.spec.CacheDir = t.TempDir()
			}
			src, err := Open(tt.spec, testLogger(t))
			var got string
			switch src.(type) {
			case *gitSource:
				got = "git"
			case *dirSource:
				got = "dir"
			}
			if tt.want == "git" || tt.want == "dir" {
				if err != nil || got != tt.want {
					t.Fatalf("Open = %s, %v; want a %s source", got, err, tt.want)
				}
				if !strings.Contains(src.String(), tt.wantStr) {
					t.Errorf("String() = %q, want it to contain %q", src.String(), tt.wantStr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Open = %s, %v; want an error containing %q", got, err, tt.want)
			}
		})
	}
}

// writeSSHTestFiles returns ssh Auth pointing at a throwaway key and an
// empty known_hosts file.
func writeSSHTestFiles(t *testing.T) Auth {
	t.Helper()
	key, _ := writeSSHKey(t, "")
	kh := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(kh, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return Auth{SSHKeyFile: key, KnownHostsFile: kh}
}

func TestCredentialsNeverShown(t *testing.T) {
	const secret = "s3cr3t-t0ken"
	tests := []struct {
		name string
		spec Spec
	}{
		{"password in URL", Spec{Repo: "https://user:" + secret + "@git.example.com/deploy.git"}},
		{"token as URL user", Spec{Repo: "https://" + secret + "@git.example.com/deploy.git"}},
		{"token", Spec{Repo: "https://git.example.com/deploy.git", Auth: Auth{Token: secret}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.spec.CacheDir = t.TempDir()
			src, err := Open(tt.spec, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			g := src.(*gitSource)
			if strings.Contains(g.String(), secret) || strings.Contains(g.url, secret) {
				t.Errorf("String() %q or URL %q holds the secret", g.String(), g.url)
			}
			err = g.wrapError("git fetch", errors.New("server said: bad credential "+secret+"\nbye"), "")
			if strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "[redacted]") {
				t.Errorf("error %q was not redacted", err)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines", err)
			}
		})
	}
}

func TestCleanSubPath(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{"", "", false},
		{"/", "", false},
		{".", "", false},
		{"apps", "apps", false},
		{"/apps/prod/", "apps/prod", false},
		{"apps//prod", "apps/prod", false},
		{"apps/../prod", "prod", false},
		{"..", "", true},
		{"../x", "", true},
		{"apps/../../x", "", true},
	}
	for _, tt := range tests {
		got, err := cleanSubPath(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("cleanSubPath(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestIsManifestFile(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"deploy.yaml", true},
		{"deploy.yml", true},
		{"deploy.json", true},
		{"DEPLOY.YAML", true},
		{"deploy.yaml~", false},
		{".deploy.yaml.swp", false},
		{"deploy.yaml.swx", false},
		{"#deploy.yaml#", false},
		{".#deploy.yaml", false},
		{"4913", false},
		{".hidden.yaml", false},
		{"kustomization.yaml.bak", false},
		{"README.md", false},
		{"values.yaml.tmp", false},
		{"yaml", false},
	}
	for _, tt := range tests {
		if got := isManifestFile(tt.name); got != tt.want {
			t.Errorf("isManifestFile(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestSubject(t *testing.T) {
	tests := []struct{ message, want string }{
		{"one line", "one line"},
		{"subject\n\nbody\nmore", "subject"},
		{"\n\nleading blank lines\nbody", "leading blank lines"},
		{"trailing spaces   \n", "trailing spaces"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := subject(tt.message); got != tt.want {
			t.Errorf("subject(%q) = %q, want %q", tt.message, got, tt.want)
		}
	}
}
