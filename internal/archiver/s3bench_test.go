package archiver

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/objstore"
	"github.com/logcompactd/logcompactd/internal/testutil"
)

// logLines is n bytes of varied log lines (zstd ratio about 4, like real logs).
func logLines(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed))
	paths := []string{"/", "/api/v1/items", "/api/v1/users", "/health", "/static/app.js", "/login"}
	var b bytes.Buffer
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "2026-12-02T10:%02d:%02d.%06dZ host=web-%d level=info method=GET path=%s status=%d bytes=%d dur_ms=%d req=%016x\n",
			i/60000%60, i/1000%60, rng.IntN(1e6), rng.IntN(8), paths[rng.IntN(len(paths))], []int{200, 200, 200, 304, 404, 500}[rng.IntN(6)],
			rng.IntN(100000), rng.IntN(900), rng.Uint64())
	}
	return b.Bytes()[:n]
}

// counter counts the write requests (PUT, POST) a proxy forwards to the server.
type counter struct {
	addr   string
	writes atomic.Int64
}

func countingProxy(b *testing.B, target string) *counter {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	c := &counter{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	c.addr = "http://" + l.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut || r.Method == http.MethodPost {
			c.writes.Add(1)
		}
		rp.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	b.Cleanup(func() { srv.Close() })
	return c
}

// BenchmarkArchiveToS3 (make bench): 200 MiB of log lines archived with zstd
// to a real S3 server on loopback (versitygw; staged, uploaded in 64 MiB
// parts, verified by HEAD, the segment removed) against the same archival to a
// local cold dir and against a plain PutObject of the same compressed bytes
// with the same SDK (the limit); and the write requests per GiB of input for
// 200 segments of 100 KiB, one object each and batched (Batch, target 128 MiB).
func BenchmarkArchiveToS3(b *testing.B) {
	store := testutil.StartS3(b, "bkt")
	for _, kv := range store.Env() {
		k, v, _ := strings.Cut(kv, "=")
		b.Setenv(k, v)
	}
	px := countingProxy(b, store.Endpoint)
	s3cfg := config.S3{Endpoint: px.addr, Region: "us-east-1", PathStyle: true, PartSize: 64 << 20, Timeout: 2 * time.Minute}
	st, err := objstore.New(context.Background(), "s3://bkt", s3cfg)
	if err != nil {
		b.Fatal(err)
	}
	data := logLines(200<<20, 1)
	var s3MBs, dirMBs, putMBs, single, batched float64
	for i := 0; i < b.N; i++ {
		base := b.TempDir()
		// to S3, then to a local dir: the same segment, the whole protocol
		for _, where := range []string{"s3", "dir"} {
			r := newRig(b, filepath.Join(base, where, "hot"), filepath.Join(base, where, "cold"))
			if err := os.WriteFile(filepath.Join(r.hotPath, "app-1.log"), data, 0o644); err != nil {
				b.Fatal(err)
			}
			j := r.job(b, "app-1.log", "zstd")
			if where == "s3" {
				j.Store = st.Publisher(fmt.Sprintf("run%d", i), r.hot)
			}
			start := time.Now()
			if _, err := r.env.Move(context.Background(), j); err != nil {
				b.Fatal(err)
			}
			mbs := float64(len(data)) / 1e6 / time.Since(start).Seconds()
			if where == "s3" {
				s3MBs += mbs
			} else {
				dirMBs += mbs
				// the limit: a plain PUT of the archive's bytes, same SDK, same server
				zb, err := os.ReadFile(filepath.Join(r.coldPath, j.Output))
				if err != nil {
					b.Fatal(err)
				}
				client := s3.NewFromConfig(aws.Config{Region: "us-east-1", Credentials: aws.AnonymousCredentials{}}, func(o *s3.Options) {
					o.BaseEndpoint, o.UsePathStyle = aws.String(store.Endpoint), true
					o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
					o.Credentials = staticCreds{store.Access, store.Secret}
				})
				start := time.Now()
				if _, err := client.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("bkt"),
					Key: aws.String(fmt.Sprintf("plain/%d", i)), Body: bytes.NewReader(zb), ContentLength: aws.Int64(int64(len(zb)))}); err != nil {
					b.Fatal(err)
				}
				putMBs += float64(len(data)) / 1e6 / time.Since(start).Seconds() // input-equivalent, as the others
			}
		}
		// write requests per GiB: 200 × 100 KiB, one object each, then batched
		for _, batch := range []bool{false, true} {
			r := newRig(b, filepath.Join(base, fmt.Sprint("small", batch), "hot"), filepath.Join(base, fmt.Sprint("small", batch), "cold"))
			const n, size = 200, 100 << 10
			var jobs []MoveJob
			for k := 0; k < n; k++ {
				name := fmt.Sprintf("app-%06d.log", k)
				if err := os.WriteFile(filepath.Join(r.hotPath, name), logLines(size, uint64(k+2)), 0o644); err != nil {
					b.Fatal(err)
				}
				j := r.job(b, name, "zstd")
				j.Store = st.Publisher(fmt.Sprintf("small%v%d", batch, i), r.hot)
				jobs = append(jobs, j)
			}
			if batch {
				first := jobs[0]
				for _, j := range jobs[1:] {
					first.More = append(first.More, j.Segment)
				}
				first.Output = ColdName(BatchBase(jobs[0].Segment.Name, jobs[n-1].Segment.Name, n), 0, "zstd", 0)
				jobs = []MoveJob{first}
			}
			before := px.writes.Load()
			for _, j := range jobs {
				if _, err := r.env.Move(context.Background(), j); err != nil {
					b.Fatal(err)
				}
			}
			perGiB := float64(px.writes.Load()-before) / (float64(n*size) / (1 << 30))
			if batch {
				batched += perGiB
			} else {
				single += perGiB
			}
		}
	}
	nf := float64(b.N)
	b.ReportMetric(s3MBs/nf, "s3-MB/s")
	b.ReportMetric(dirMBs/nf, "dir-MB/s")
	b.ReportMetric(putMBs/nf, "put-MB/s")
	b.ReportMetric(single/nf, "writes/GiB-single")
	b.ReportMetric(batched/nf, "writes/GiB-batched")
}

type staticCreds struct{ id, secret string }

func (c staticCreds) Retrieve(context.Context) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: c.id, SecretAccessKey: c.secret, Source: "bench"}, nil
}
