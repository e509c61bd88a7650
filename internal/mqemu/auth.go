package mqemu

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"slices"
	"strings"
	"time"
)

// mqVersion is the only API version the SDKs speak.
const mqVersion = "2015-06-06"

// signature computes the request signature the way both SDKs do:
//
//	base64(HMAC-SHA1(secret, METHOD\nContent-MD5\nContent-Type\nDate\n
//	    sorted "x-mq-*:value" lines\n/resource))
//
// resource is the raw request target from "/topics/" on, undecoded.
func signature(secret, method, contentMD5, contentType, date string, mqHeaders []string, resource string) string {
	var b strings.Builder
	b.WriteString(method)
	b.WriteByte('\n')
	b.WriteString(contentMD5)
	b.WriteByte('\n')
	b.WriteString(contentType)
	b.WriteByte('\n')
	b.WriteString(date)
	b.WriteByte('\n')
	b.WriteString(strings.Join(mqHeaders, "\n"))
	b.WriteByte('\n')
	b.WriteString(resource)
	mac := hmac.New(sha1.New, []byte(secret))
	mac.Write([]byte(b.String()))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// canonicalMQHeaders lists the x-mq-* headers as the SDKs sign them:
// lowercase name, trimmed value, sorted. Go's server canonicalises names
// (X-Mq-Version), the SDKs sign lowercase ones.
func canonicalMQHeaders(h http.Header) []string {
	var out []string
	for k, vs := range h {
		lk := strings.ToLower(k)
		if strings.HasPrefix(lk, "x-mq-") && len(vs) > 0 {
			out = append(out, lk+":"+strings.TrimSpace(vs[0]))
		}
	}
	slices.Sort(out)
	return out
}

// contentMD5 is the SDKs' non-standard Content-MD5: base64 of the
// lowercase hex digest.
func contentMD5(body []byte) string {
	sum := md5.Sum(body)
	return base64.StdEncoding.EncodeToString([]byte(hex.EncodeToString(sum[:])))
}

var (
	errMissingAuth  = &apiError{400, "MissingAuthorizationHeader", "Authorization header is required."}
	errInvalidAuth  = &apiError{400, "InvalidAuthorizationHeader", "The Authorization header format is invalid."}
	errMissingDate  = &apiError{400, "MissingDateHeader", "Date header is required."}
	errInvalidDate  = &apiError{400, "InvalidDateHeader", "The Date header format is invalid."}
	errTimeExpired  = &apiError{408, "TimeExpired", "The http request you sent is expired."}
	errUnknownKey   = &apiError{403, "InvalidAccessKeyId", "The AccessKey Id you provided is not exist."}
	errBadSignature = &apiError{403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your key and signing method."}
	errBadDigest    = &apiError{400, "InvalidDigest", "The Content-MD5 you specified is invalid."}
)

// authenticate checks the Authorization and Date headers of r against the
// configured credentials. resource is the signed part of the request
// target.
func (e *Emulator) authenticate(r *http.Request, resource string) *apiError {
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return errMissingAuth
	}
	date := r.Header.Get("Date")
	if date == "" {
		return errMissingDate
	}
	sent, err := time.Parse(http.TimeFormat, date)
	if err != nil {
		return errInvalidDate
	}
	if skew := time.Since(sent); skew > e.cfg.MaxClockSkew || -skew > e.cfg.MaxClockSkew {
		return errTimeExpired
	}
	rest, ok := strings.CutPrefix(auth, "MQ ")
	if !ok {
		return errInvalidAuth
	}
	key, sig, ok := strings.Cut(rest, ":")
	if !ok || key == "" || sig == "" {
		return errInvalidAuth
	}
	secret, ok := e.secrets[key]
	if !ok {
		return errUnknownKey
	}
	want := signature(secret, r.Method, r.Header.Get("Content-MD5"), r.Header.Get("Content-Type"),
		date, canonicalMQHeaders(r.Header), resource)
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return errBadSignature
	}
	return nil
}
