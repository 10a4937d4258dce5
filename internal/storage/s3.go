package storage

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// S3Config configures [NewS3].
type S3Config struct {
	// Bucket is required.
	Bucket string
	// Prefix is prepended to every key ("postern" stores "a/b" as
	// "postern/a/b"); a trailing "/" is added when missing.
	Prefix string
	// Region of the bucket. Empty: from the SDK's standard chain, else
	// "us-east-1".
	Region string
	// Endpoint overrides the S3 URL, for S3-compatible servers
	// ("http://127.0.0.1:7070"). Empty: AWS.
	Endpoint string
	// PathStyle addresses buckets as ENDPOINT/BUCKET/KEY instead of
	// BUCKET.ENDPOINT/KEY; most S3-compatible servers need it.
	PathStyle bool

	// AccessKeyID and SecretAccessKey (with optional SessionToken) are
	// static credentials. Empty: the SDK's standard chain.
	AccessKeyID     string
	SecretAccessKey string
	SessionToken    string
	// Profile and CredentialsFile select a shared-config profile and a
	// shared credentials file for the standard chain (ignored with static
	// keys). Empty: the SDK's defaults (AWS_PROFILE, ~/.aws/credentials).
	Profile         string
	CredentialsFile string

	// MaxAttempts bounds the SDK's own retries of one request (0: the
	// SDK's default of 3). The spool retries on top of that.
	MaxAttempts int
	// HTTPClient replaces the SDK's HTTP client (tests).
	HTTPClient *http.Client
}

// S3 is a [Store] in an S3 bucket.
type S3 struct {
	client *s3.Client
	bucket string
	prefix string
}

var _ Store = (*S3)(nil)

// NewS3 returns an S3 store. It loads credentials but makes no request;
// the first error from S3 comes from the first operation.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3 store: bucket is required")
	}
	prefix := cfg.Prefix
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	if err := validatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("s3 store: prefix: %w", err)
	}
	var opts []func(*awsconfig.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" || cfg.SecretAccessKey != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	} else {
		if cfg.Profile != "" {
			opts = append(opts, awsconfig.WithSharedConfigProfile(cfg.Profile))
		}
		if cfg.CredentialsFile != "" {
			opts = append(opts, awsconfig.WithSharedCredentialsFiles([]string{cfg.CredentialsFile}))
		}
	}
	if cfg.MaxAttempts > 0 {
		opts = append(opts, awsconfig.WithRetryMaxAttempts(cfg.MaxAttempts))
	}
	if cfg.HTTPClient != nil {
		opts = append(opts, awsconfig.WithHTTPClient(cfg.HTTPClient))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3 store: load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
	})
	return &S3{client: client, bucket: cfg.Bucket, prefix: prefix}, nil
}

func (s *S3) name(key string) string { return s.prefix + key }

// Put implements [Store]. The SHA-256 of the body travels as
// x-amz-checksum-sha256 (S3 refuses the upload if the bytes differ) and in
// the metadata; the request carries If-None-Match: * so an existing object
// is never replaced. A HeadObject then confirms size and checksum.
func (s *S3) Put(ctx context.Context, key string, body io.ReadSeeker, size int64, meta map[string]string) (ObjectInfo, error) {
	if err := ValidateKey(key); err != nil {
		return ObjectInfo{}, err
	}
	if err := validateMeta(meta); err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	sec, err := newSection(body, size)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	sum, err := digest(body, size)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	if _, err := sec.Seek(0, io.SeekStart); err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s: %w", key, err)
	}
	hexsum := hexSum(sum)
	m := make(map[string]string, len(meta)+1)
	for k, v := range meta {
		m[k] = v
	}
	m[metaSHA256] = hexsum
	_, err = s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:         aws.String(s.bucket),
		Key:            aws.String(s.name(key)),
		Body:           sec,
		ContentLength:  aws.Int64(size),
		ChecksumSHA256: aws.String(base64.StdEncoding.EncodeToString(sum)),
		Metadata:       m,
		IfNoneMatch:    aws.String("*"),
	})
	if err != nil && !isCode(err, "PreconditionFailed", "ConditionalRequestConflict") {
		return ObjectInfo{}, s.wrap("put", key, err)
	}
	// Either it was just written, or an object was already there (a retry
	// after a crash, or a conflict): the read-back decides.
	existed := err != nil
	info, err := s.Stat(ctx, key)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("put %s: %w: %w", key, ErrNotConfirmed, err)
	}
	if info.Size != size || info.SHA256 != hexsum {
		if existed {
			return ObjectInfo{}, fmt.Errorf("put %s: %w (stored sha256 %s, size %d)", key, ErrExists, info.SHA256, info.Size)
		}
		return ObjectInfo{}, fmt.Errorf("put %s: %w: stored size %d sha256 %s, sent %d %s",
			key, ErrNotConfirmed, info.Size, info.SHA256, size, hexsum)
	}
	return info, nil
}

// Get implements [Store].
func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket:       aws.String(s.bucket),
		Key:          aws.String(s.name(key)),
		ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return nil, s.wrap("get", key, err)
	}
	return out.Body, nil
}

// Stat implements [Store]. SHA256 is the checksum S3 reports, or failing
// that the one Put recorded in the metadata.
func (s *S3) Stat(ctx context.Context, key string) (ObjectInfo, error) {
	if err := ValidateKey(key); err != nil {
		return ObjectInfo{}, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{
		Bucket:       aws.String(s.bucket),
		Key:          aws.String(s.name(key)),
		ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return ObjectInfo{}, s.wrap("stat", key, err)
	}
	info := ObjectInfo{Key: key, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified)}
	if c := aws.ToString(out.ChecksumSHA256); c != "" && out.ChecksumType != types.ChecksumTypeComposite {
		b, err := base64.StdEncoding.DecodeString(c)
		if err != nil {
			return ObjectInfo{}, fmt.Errorf("stat %s: bad checksum %q from server: %w", key, c, err)
		}
		info.SHA256 = hex.EncodeToString(b)
	} else {
		info.SHA256 = out.Metadata[metaSHA256]
	}
	for k, v := range out.Metadata {
		k = strings.ToLower(k)
		if k == metaSHA256 {
			continue
		}
		if info.Meta == nil {
			info.Meta = map[string]string{}
		}
		info.Meta[k] = v
	}
	return info, nil
}

// List implements [Store].
func (s *S3) List(ctx context.Context, prefix string) ([]ObjectInfo, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, err
	}
	var out []ObjectInfo
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.bucket),
		Prefix: aws.String(s.name(prefix)),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, s.wrap("list", prefix, err)
		}
		for _, o := range page.Contents {
			k := strings.TrimPrefix(aws.ToString(o.Key), s.prefix)
			if ValidateKey(k) != nil {
				continue // not written by postern
			}
			out = append(out, ObjectInfo{Key: k, Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified)})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// wrap names the operation and object and adds the matching sentinel.
func (s *S3) wrap(op, key string, err error) error {
	where := fmt.Sprintf("%s s3://%s/%s", op, s.bucket, s.name(key))
	switch {
	case isCode(err, "NoSuchKey", "NotFound"):
		return fmt.Errorf("%s: %w", where, ErrNotFound)
	case isCode(err, "AccessDenied", "SignatureDoesNotMatch", "InvalidAccessKeyId", "InvalidToken", "ExpiredToken", "Forbidden",
		"XAdminUserNotFound"): // versitygw's answer to an unknown key id (AWS: InvalidAccessKeyId)
		return fmt.Errorf("%s: %w (check the credentials and the IAM policy): %w", where, ErrAccessDenied, err)
	case isCode(err, "BadDigest", "InvalidDigest", "XAmzContentChecksumMismatch", "XAmzContentSHA256Mismatch"):
		return fmt.Errorf("%s: %w: %w", where, ErrChecksum, err)
	}
	return fmt.Errorf("%s: %w", where, err)
}

// isCode reports whether err is an S3 API error with one of the codes (a
// HEAD has no body, so its 403/404 arrive as "Forbidden"/"NotFound").
func isCode(err error, codes ...string) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	for _, c := range codes {
		if ae.ErrorCode() == c {
			return true
		}
	}
	return false
}
