package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"berth.dev/berth/nodeagent/runtime/podman/podmantest"
)

// BenchmarkCommitToServing measures, on real Podman and a real Git
// repository, how long a one-line image change takes from the webhook to
// (a) the first answer from the new version through the Service's NodePort
// and (b) the whole 3-replica rollout being complete. DESIGN.md's target for
// (a) is about two seconds on one host. Run with `make bench-e2e`.
func BenchmarkCommitToServing(b *testing.B) {
	podmantest.Require(b)
	podmantest.HelloImage(b, "v1")
	podmantest.HelloImage(b, "v2")
	repo := newGitRepo(b)
	copyExample(b, repo)
	c := repo.commit("hello v1")
	p := startBerth(b, "--repo", repo.URL(), "--path", "deploy", "--interval", "1h")
	p.waitRolledOut("hello", "hello", c, 3, 2*time.Minute)

	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	versions := []string{"v1", "v2"}
	var firstServing, rolledOut time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		from, to := versions[i%2], versions[(i+1)%2]
		repo.edit("deploy/deployment.yaml", "berth-hello:"+from, "berth-hello:"+to)
		sha := repo.commit("hello " + to)
		b.StartTimer()

		start := time.Now()
		resp, err := http.Post(p.server+"/hooks/git", "application/json", strings.NewReader(`{}`))
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		for {
			if r, err := client.Get("http://127.0.0.1:30080/"); err == nil {
				buf := make([]byte, 16)
				n, _ := r.Body.Read(buf)
				r.Body.Close()
				if strings.HasPrefix(string(buf[:n]), "hello "+to) {
					break
				}
			}
			if time.Since(start) > time.Minute {
				b.Fatalf("%s never served", to)
			}
			time.Sleep(10 * time.Millisecond)
		}
		firstServing += time.Since(start)
		b.StopTimer()
		p.waitRolledOut("hello", "hello", sha, 3, 2*time.Minute)
		rolledOut += time.Since(start)
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(firstServing.Seconds()/float64(b.N), "s-to-first-serving")
	b.ReportMetric(rolledOut.Seconds()/float64(b.N), "s-to-rolled-out")
}
