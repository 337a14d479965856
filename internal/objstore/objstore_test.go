package objstore

import "testing"

func TestStreamOfKeepsTheURL(t *testing.T) {
	url, stream := StreamOf("s3://bkt/fleet/vm/app")
	if url != "s3://bkt/fleet/vm" || stream != "app" {
		t.Fatalf("StreamOf: %q %q", url, stream)
	}
	p := (&Publisher{s: &Store{url: "s3://bkt"}, stream: "app"}).Path()
	if u, s := StreamOf(p); u != "s3://bkt" || s != "app" {
		t.Fatalf("Path %q -> %q %q", p, u, s)
	}
}
