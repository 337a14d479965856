// Package objstore is the cold tier on S3-compatible object storage: an
// fsx.Publisher whose publish is an upload that never overwrites, so that an
// archival to a bucket runs through the same journaled operation layer as one
// to a directory (README "Cold tier on S3").
//
// An archive is staged in the hot dir under a journaled temporary name (as a
// local one is), then uploaded with If-None-Match: * and its CRC-32C, then
// checked with HEAD (size, CRC-32C, and the op's mark in the object's metadata)
// before the journal's commit; only then is the segment removed. The mark — the
// staged file's identity — is how recovery tells the op's own object from
// anybody else's: it deletes only its own.
package objstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/logging"

	"github.com/logcompactd/logcompactd/internal/config"
	"github.com/logcompactd/logcompactd/internal/fsx"
)

// markKey is the user metadata that carries the op's mark (x-amz-meta-lcd-created).
const markKey = "lcd-created"

// mtimeKey carries the archive's mtime (the segment's, ns since the epoch):
// an object's own Last-Modified is its upload's.
const mtimeKey = "lcd-mtime"

// Store is one bucket and prefix.
type Store struct {
	url     string // s3://bucket[/prefix], as configured (expanded)
	bucket  string
	prefix  string
	cfg     config.S3
	client  *s3.Client
	honours atomic.Int32 // If-None-Match: 0 unknown, 1 honoured, 2 ignored (HEAD before PUT)
	// Fault, if set, is called at every named step of an upload ("s3:put",
	// "s3:part:N", "s3:uploaded", "s3:verified"): tests crash there.
	Fault func(point string)
}

func (s *Store) step(point string) {
	if s.Fault != nil {
		s.Fault(point)
	}
}

// New builds a client from the standard AWS credential chain (environment,
// shared config and credentials files with AWS_PROFILE, web identity, ECS,
// EC2 IMDSv2) — never from the YAML. Request checksums are sent only when
// required (the SDK's default CRC32 trips some S3-compatible servers); the
// archive's CRC-32C is sent explicitly. Retries: the SDK's standard retryer
// (backoff with jitter on 5xx, throttling such as SlowDown, and timeouts; none
// on other 4xx), 5 attempts.
func New(ctx context.Context, coldURL string, c config.S3) (*Store, error) {
	u, ok, err := config.ParseColdURL(coldURL)
	if !ok || err != nil {
		return nil, fmt.Errorf("cold_dir %q: not an s3:// URL: %v", coldURL, err)
	}
	ac, err := awsconfig.LoadDefaultConfig(ctx, awsconfig.WithRegion(c.Region),
		awsconfig.WithLogger(logging.Nop{}), // what matters reaches the daemon's log as errors
		awsconfig.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = 5 })
		}))
	if err != nil {
		return nil, fmt.Errorf("AWS credential chain: %w", err)
	}
	client := s3.NewFromConfig(ac, func(o *s3.Options) {
		if c.Endpoint != "" {
			o.BaseEndpoint = aws.String(c.Endpoint)
		}
		o.UsePathStyle = c.PathStyle
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	return &Store{url: strings.TrimSuffix(coldURL, "/"), bucket: u.Bucket, prefix: u.Prefix, cfg: c, client: client}, nil
}

// URL is the store's s3:// URL.
func (s *Store) URL() string { return s.url }

// key is the object key of name in stream's "directory".
func (s *Store) key(stream, name string) string {
	if s.prefix == "" {
		return stream + "/" + name
	}
	return s.prefix + "/" + stream + "/" + name
}

// call gives one request its deadline.
func (s *Store) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.Timeout)
}

// Probe checks that the bucket can be reached and written, and whether it
// honours If-None-Match (a probe object written twice). It says what it found;
// an error means archival to it cannot work now.
func (s *Store) Probe(ctx context.Context) (string, error) {
	c, cancel := s.call(ctx)
	defer cancel()
	if _, err := s.client.HeadBucket(c, &s3.HeadBucketInput{Bucket: &s.bucket}); err != nil {
		return "", fmt.Errorf("%s: bucket not reachable: %w", s.url, err)
	}
	key := s.key(".logcompactd-probe", strconv.FormatInt(time.Now().UnixNano(), 36)+"-"+strconv.Itoa(os.Getpid()))
	put := func() error {
		c, cancel := s.call(ctx)
		defer cancel()
		_, err := s.client.PutObject(c, &s3.PutObjectInput{Bucket: &s.bucket, Key: &key, Body: bytes.NewReader([]byte("probe\n")),
			IfNoneMatch: aws.String("*")})
		return err
	}
	if err := put(); err != nil {
		return "", fmt.Errorf("%s: cannot write: %w", s.url, err)
	}
	err := put()
	var what string
	switch {
	case isPreconditionFailed(err):
		s.honours.Store(1)
		what = "reachable, writable, honours If-None-Match"
	case err == nil:
		s.honours.Store(2)
		what = "reachable, writable, IGNORES If-None-Match: every upload is preceded by a HEAD (a concurrent writer of the same key could still be overwritten)"
	default:
		return "", fmt.Errorf("%s: probe: %w", s.url, err)
	}
	c2, cancel2 := s.call(ctx)
	defer cancel2()
	_, _ = s.client.DeleteObject(c2, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key})
	return what, nil
}

// IgnoresIfNoneMatch reports what Probe found.
func (s *Store) IgnoresIfNoneMatch() bool { return s.honours.Load() == 2 }

// List returns the names in stream's "directory" (the cold namer's taken set).
func (s *Store) List(ctx context.Context, stream string) ([]string, error) {
	prefix := s.key(stream, "")
	var out []string
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		c, cancel := s.call(ctx)
		page, err := p.NextPage(c)
		cancel()
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			if n := strings.TrimPrefix(aws.ToString(o.Key), prefix); n != "" && !strings.Contains(n, "/") {
				out = append(out, n)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// Get opens an object for reading (cat, restore, tests).
func (s *Store) Get(ctx context.Context, stream, name string) (io.ReadCloser, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: aws.String(s.key(stream, name))})
	if err != nil {
		return nil, err
	}
	return out.Body, nil
}

// Mtime is an archive's mtime (the segment's), from its metadata; the
// object's Last-Modified when it has none.
func (s *Store) Mtime(ctx context.Context, stream, name string) (time.Time, error) {
	c, cancel := s.call(ctx)
	defer cancel()
	h, err := s.client.HeadObject(c, &s3.HeadObjectInput{Bucket: &s.bucket, Key: aws.String(s.key(stream, name))})
	if err != nil {
		return time.Time{}, err
	}
	if ns, err := strconv.ParseInt(h.Metadata[mtimeKey], 10, 64); err == nil {
		return time.Unix(0, ns), nil
	}
	return aws.ToTime(h.LastModified), nil
}

// Publisher returns the fsx.Publisher of stream, staging in stage (the
// stream's hot dir: a staged archive is a temp there, as a merge output is).
func (s *Store) Publisher(stream string, stage *fsx.Dir) *Publisher {
	return &Publisher{s: s, stream: stream, stage: stage}
}

// Publisher publishes a stream's archives to the store.
type Publisher struct {
	s      *Store
	stream string
	stage  *fsx.Dir
}

var _ fsx.Publisher = (*Publisher)(nil)

// Path implements fsx.Publisher: the journal's Dest, s3://bucket[/prefix]/stream.
func (p *Publisher) Path() string { return p.s.url + "/" + p.stream }

// StreamOf is the stream of a journaled Dest made by Path.
func StreamOf(dest string) (coldURL, stream string) {
	i := strings.LastIndexByte(dest, '/')
	if i < 0 {
		return "", dest
	}
	return dest[:i], dest[i+1:] // not path.Dir: it would make s3:// s3:/
}

// Stage implements fsx.Publisher: a temp in the hot dir.
func (p *Publisher) Stage(temp string, like fsx.Stat) (*os.File, fsx.Stat, error) {
	return p.stage.CreateOutput(temp, like)
}

// mark is the op's mark: the staged file's identity.
func mark(created fsx.FileRef) string {
	return fmt.Sprintf("%d.%d.%d", created.Dev, created.Ino, created.Gen)
}

// crcB64 is a CRC-32C as S3 writes it: base64 of its 4 big-endian bytes.
func crcB64(crc uint32) string {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], crc)
	return base64.StdEncoding.EncodeToString(b[:])
}

// Publish implements fsx.Publisher: upload temp (size bytes, CRC-32C crc, as
// the layer verified and journaled them) as name without overwriting, with
// the op's mark, check the stored object with HEAD, then remove the staged
// temp. ErrExists when the name holds another object.
func (p *Publisher) Publish(temp, name string, size int64, crc uint32) error {
	ctx := context.Background()
	st, err := p.stage.Stat(temp)
	if err != nil {
		return fmt.Errorf("staged archive %s: %w", temp, err)
	}
	if st.Size != size {
		return fmt.Errorf("staged archive %s: %d bytes, %d verified: %w", temp, st.Size, size, fsx.ErrVerify)
	}
	created := fsx.RefOf(temp, st)
	f, err := p.stage.OpenRead(temp, st)
	if err != nil {
		return err
	}
	defer f.Close()
	key := p.s.key(p.stream, name)
	if p.s.IgnoresIfNoneMatch() {
		if h, err := p.head(ctx, name); err == nil {
			return p.same(h, created, st.Size, crc, name)
		} else if !isNotFound(err) {
			return err
		}
	}
	p.s.step("s3:put")
	meta := map[string]string{markKey: mark(created), mtimeKey: strconv.FormatInt(st.MtimeNs, 10)}
	if st.Size > int64(p.s.cfg.PartSize) {
		err = p.multipart(ctx, f, key, st.Size, crc, meta)
	} else {
		err = p.put(ctx, f, key, st.Size, crc, meta)
	}
	if isPreconditionFailed(err) {
		h, herr := p.head(ctx, name)
		if herr != nil {
			return fmt.Errorf("%s exists and cannot be read: %w", key, herr)
		}
		return p.same(h, created, st.Size, crc, name) // our own earlier attempt, or the name is taken
	}
	if err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	p.s.step("s3:uploaded")
	h, err := p.head(ctx, name)
	if err != nil {
		return fmt.Errorf("check %s after upload: %w", key, err)
	}
	if err := p.same(h, created, st.Size, crc, name); err != nil {
		return fmt.Errorf("%s after upload: %w", key, err)
	}
	p.s.step("s3:verified")
	return p.stage.Discard(temp, "", &created)
}

// same is nil when h is the op's object with size bytes and checksum crc;
// ErrExists when it is another.
func (p *Publisher) same(h *s3.HeadObjectOutput, created fsx.FileRef, size int64, crc uint32, name string) error {
	if h.Metadata[markKey] != mark(created) {
		return fmt.Errorf("%s/%s: %w (another object)", p.Path(), name, fsx.ErrExists)
	}
	if aws.ToInt64(h.ContentLength) != size || (h.ChecksumCRC32C != nil && aws.ToString(h.ChecksumCRC32C) != crcB64(crc)) {
		return fmt.Errorf("%s/%s: %w: stored %d bytes crc32c %s, uploaded %d bytes crc32c %s", p.Path(), name, fsx.ErrVerify,
			aws.ToInt64(h.ContentLength), aws.ToString(h.ChecksumCRC32C), size, crcB64(crc))
	}
	return nil
}

func (p *Publisher) put(ctx context.Context, f *os.File, key string, size int64, crc uint32, meta map[string]string) error {
	c, cancel := p.s.call(ctx)
	defer cancel()
	in := &s3.PutObjectInput{Bucket: &p.s.bucket, Key: &key, Body: io.NewSectionReader(f, 0, size), ContentLength: aws.Int64(size),
		ChecksumCRC32C: aws.String(crcB64(crc)), Metadata: meta}
	if !p.s.IgnoresIfNoneMatch() {
		in.IfNoneMatch = aws.String("*")
	}
	if p.s.cfg.StorageClass != "" {
		in.StorageClass = types.StorageClass(p.s.cfg.StorageClass)
	}
	_, err := p.s.client.PutObject(c, in)
	return err
}

// multipart uploads in part_size parts with a full-object CRC-32C; a failure
// aborts the upload (and recovery aborts any left by a crash: Discard).
func (p *Publisher) multipart(ctx context.Context, f *os.File, key string, size int64, crc uint32, meta map[string]string) error {
	c, cancel := p.s.call(ctx)
	in := &s3.CreateMultipartUploadInput{Bucket: &p.s.bucket, Key: &key, ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
		ChecksumType: types.ChecksumTypeFullObject, Metadata: meta}
	if p.s.cfg.StorageClass != "" {
		in.StorageClass = types.StorageClass(p.s.cfg.StorageClass)
	}
	up, err := p.s.client.CreateMultipartUpload(c, in)
	cancel()
	if err != nil {
		return err
	}
	abort := func(cause error) error {
		c, cancel := p.s.call(context.Background())
		defer cancel()
		_, aerr := p.s.client.AbortMultipartUpload(c, &s3.AbortMultipartUploadInput{Bucket: &p.s.bucket, Key: &key, UploadId: up.UploadId})
		return errors.Join(cause, aerr)
	}
	var parts []types.CompletedPart
	partSize := int64(p.s.cfg.PartSize)
	for n, off := int32(1), int64(0); off < size; n, off = n+1, off+partSize {
		l := min(partSize, size-off)
		buf := make([]byte, l)
		if _, err := f.ReadAt(buf, off); err != nil {
			return abort(err)
		}
		c, cancel := p.s.call(ctx)
		out, err := p.s.client.UploadPart(c, &s3.UploadPartInput{Bucket: &p.s.bucket, Key: &key, UploadId: up.UploadId,
			PartNumber: aws.Int32(n), Body: bytes.NewReader(buf), ContentLength: aws.Int64(l),
			ChecksumCRC32C: aws.String(crcB64(fsx.UpdateChecksum(0, buf)))})
		cancel()
		if err != nil {
			return abort(err)
		}
		parts = append(parts, types.CompletedPart{PartNumber: aws.Int32(n), ETag: out.ETag, ChecksumCRC32C: out.ChecksumCRC32C})
		p.s.step(fmt.Sprintf("s3:part:%d", n))
	}
	cc, ccancel := p.s.call(ctx)
	defer ccancel()
	cin := &s3.CompleteMultipartUploadInput{Bucket: &p.s.bucket, Key: &key, UploadId: up.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}, ChecksumCRC32C: aws.String(crcB64(crc)),
		ChecksumType: types.ChecksumTypeFullObject}
	if !p.s.IgnoresIfNoneMatch() {
		cin.IfNoneMatch = aws.String("*")
	}
	if _, err := p.s.client.CompleteMultipartUpload(cc, cin); err != nil {
		return abort(err)
	}
	return nil
}

func (p *Publisher) head(ctx context.Context, name string) (*s3.HeadObjectOutput, error) {
	c, cancel := p.s.call(ctx)
	defer cancel()
	return p.s.client.HeadObject(c, &s3.HeadObjectInput{Bucket: &p.s.bucket, Key: aws.String(p.s.key(p.stream, name)),
		ChecksumMode: types.ChecksumModeEnabled})
}

// Verify implements fsx.Publisher: HEAD says the op's object, size bytes, crc.
func (p *Publisher) Verify(name string, created fsx.FileRef, size int64, crc uint32) bool {
	h, err := p.head(context.Background(), name)
	return err == nil && p.same(h, created, size, crc, name) == nil
}

// Open implements fsx.Publisher (recovery's read-back of a committed archive).
func (p *Publisher) Open(name string, created fsx.FileRef) (io.ReadCloser, error) {
	ctx, cancel := p.s.call(context.Background())
	out, err := p.s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &p.s.bucket, Key: aws.String(p.s.key(p.stream, name))})
	if err != nil {
		cancel()
		return nil, err
	}
	if out.Metadata[markKey] != mark(created) {
		out.Body.Close()
		cancel()
		return nil, fmt.Errorf("%s/%s: %w (another object)", p.Path(), name, fsx.ErrExists)
	}
	return readCloser{out.Body, cancel}, nil
}

type readCloser struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (r readCloser) Close() error { err := r.ReadCloser.Close(); r.cancel(); return err }

// Discard implements fsx.Publisher: the staged temp (by identity), any
// multipart upload left on the key, and the object if — and only if — it
// carries the op's mark.
func (p *Publisher) Discard(temp, name string, created *fsx.FileRef) error {
	if err := p.stage.Discard(temp, "", created); err != nil {
		return err
	}
	if name == "" {
		return nil
	}
	ctx := context.Background()
	key := p.s.key(p.stream, name)
	if err := p.abortUploads(ctx, key); err != nil {
		return err
	}
	h, err := p.head(ctx, name)
	switch {
	case isNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("discard %s: %w", key, err)
	case created == nil || h.Metadata[markKey] != mark(*created):
		return nil // not ours: never touched
	}
	c, cancel := p.s.call(ctx)
	defer cancel()
	if _, err := p.s.client.DeleteObject(c, &s3.DeleteObjectInput{Bucket: &p.s.bucket, Key: &key}); err != nil {
		return fmt.Errorf("discard %s: %w", key, err)
	}
	return nil
}

func (p *Publisher) abortUploads(ctx context.Context, key string) error {
	c, cancel := p.s.call(ctx)
	defer cancel()
	out, err := p.s.client.ListMultipartUploads(c, &s3.ListMultipartUploadsInput{Bucket: &p.s.bucket, Prefix: &key})
	if err != nil {
		return fmt.Errorf("list uploads of %s: %w", key, err)
	}
	for _, u := range out.Uploads {
		if aws.ToString(u.Key) != key {
			continue
		}
		if _, err := p.s.client.AbortMultipartUpload(c, &s3.AbortMultipartUploadInput{Bucket: &p.s.bucket, Key: &key, UploadId: u.UploadId}); err != nil {
			return fmt.Errorf("abort upload of %s: %w", key, err)
		}
	}
	return nil
}

// Published implements fsx.Publisher: the object carries the op's mark. When
// the store cannot answer, it may be: only a verified commit decides then.
func (p *Publisher) Published(temp, name string, created *fsx.FileRef) bool {
	h, err := p.head(context.Background(), name)
	if isNotFound(err) {
		return false
	}
	if err != nil || created == nil {
		return true
	}
	return h.Metadata[markKey] == mark(*created)
}

func isPreconditionFailed(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) && (ae.ErrorCode() == "PreconditionFailed" || ae.ErrorCode() == "ConditionalRequestConflict") {
		return true
	}
	var re interface{ HTTPStatusCode() int }
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusPreconditionFailed
}

func isNotFound(err error) bool {
	var nf *types.NotFound
	var nk *types.NoSuchKey
	if errors.As(err, &nf) || errors.As(err, &nk) {
		return true
	}
	var re interface{ HTTPStatusCode() int }
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}
