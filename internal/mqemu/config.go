package mqemu

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Credential is one accepted AccessKey pair. Requests signed with the
// secret of a listed key are accepted; every other signature is rejected
// the way the cloud rejects it.
type Credential struct{ AccessKey, SecretKey string }

// Defaults, taken from the cloud's documented behaviour.
const (
	DefaultInvisibleTime        = 5 * time.Minute
	DefaultOrderlyInvisibleTime = time.Minute
	DefaultMaxDeliveries        = 16
	DefaultMaxClockSkew         = 15 * time.Minute
	DefaultMaxLongPoll          = 30 * time.Second
	DefaultPersistInterval      = 5 * time.Second

	// MaxMessageBodyBytes is the documented body limit for normal and
	// ordered messages (4 MB).
	MaxMessageBodyBytes = 4 << 20
	// MaxTimerBodyBytes is the documented body limit for timer and
	// transactional messages (64 KB).
	MaxTimerBodyBytes = 64 << 10
	// MaxPropertiesBytes is the documented limit of the serialized
	// properties (16 KB).
	MaxPropertiesBytes = 16 << 10
	// MaxBatch is the most messages one consume or ack request may carry.
	MaxBatch = 16
	// MaxWaitSeconds is the longest long poll a request may ask for.
	MaxWaitSeconds = 30
	// MaxTimerDelay is how far ahead a timer message may be scheduled.
	MaxTimerDelay = 40 * 24 * time.Hour
)

// Config configures an Emulator. Zero values select the cloud's defaults.
type Config struct {
	// Credentials are the accepted key pairs; at least one is required.
	Credentials []Credential
	// InstanceID, when non-empty, must be sent by every request as the ns
	// query parameter (otherwise TopicNotExist, as a topic of another
	// instance would). "" accepts requests with or without ns.
	InstanceID string
	// Topics lists the topics that exist; publishing to or consuming from
	// any other topic answers 404 TopicNotExist unless AutoCreateTopics.
	Topics []string
	// AutoCreateTopics creates a topic on its first use instead of
	// answering TopicNotExist. Off by default, as in the cloud.
	AutoCreateTopics bool
	// InvisibleTime is how long a consumed, unacked message stays hidden
	// before it is delivered again. Zero = 5 minutes (the cloud's value).
	InvisibleTime time.Duration
	// OrderlyInvisibleTime is the same for ConsumeMessageOrderly.
	// Zero = 1 minute (the cloud's value).
	OrderlyInvisibleTime time.Duration
	// MaxDeliveries is how many deliveries a message gets; when the last
	// one's invisibility ends without an ack the message is dead-lettered.
	// Zero = 16.
	MaxDeliveries int
	// MaxClockSkew is how far a request's Date header may be from the
	// emulator's wall clock before 408 TimeExpired. Zero = 15 minutes.
	MaxClockSkew time.Duration
	// MaxLongPoll caps the waitseconds a consume request is allowed to
	// block (values above it are honoured only up to it). Zero = 30 s.
	MaxLongPoll time.Duration
	// PersistPath, when non-empty, names a JSON state file: loaded by New
	// if it exists, written atomically (temp file + rename) every
	// PersistInterval while state changes, and on Close. "" = memory only.
	PersistPath string
	// PersistInterval is how often changed state is written to
	// PersistPath. Zero = 5 s. Ignored without PersistPath.
	PersistInterval time.Duration
	// AdminHosts are host names (no port) besides loopback ones that the
	// /_emulator/ endpoints answer to in the Host header. Loopback names
	// (localhost, 127.0.0.0/8, ::1) are always accepted; any other Host is
	// refused, so a web page cannot reach the endpoints by DNS rebinding.
	AdminHosts []string
	// Faults are injected from the start; SetFaults changes them later.
	Faults Faults
	// Seed seeds the fault RNG: the same seed and the same sequence of
	// requests inject the same faults. Zero is a valid seed like any other.
	Seed int64
	// Logger receives operational logs; nil discards them. Message bodies
	// and secrets are never logged.
	Logger *slog.Logger
}

// Faults describes injected misbehaviour. Zero value = a well-behaved broker.
type Faults struct {
	// DuplicateRate is the probability in [0,1] that a message delivered
	// by a (non-orderly) consume is also offered again at once, so that a
	// later consume gets it a second time with its own receipt handle
	// while the first delivery is still in flight.
	DuplicateRate float64
	// ExpireRate is the probability in [0,1] that an ack of a valid handle
	// is answered as if the handle had expired: the per-handle
	// ReceiptHandleError is returned, the message is not acked, and its
	// invisibility ends at once so it is redelivered promptly.
	ExpireRate float64
	// ErrorRate is the probability in [0,1] that an API request is
	// answered 500 InternalError before anything else happens.
	ErrorRate float64
	// Latency is added to every API request before it is processed.
	Latency time.Duration
}

// FaultsEnv is the environment variable FaultsFromEnv reads.
const FaultsEnv = "MQEMU_FAULTS"

// ParseFaults parses a comma-separated spec such as
// "dup=0.1,expire=0.05,error=0.01,latency=20ms" (the format Faults.String
// prints). Keys: dup (alias duplicate), expire, error, latency. Rates are
// probabilities in [0,1]; latency is a Go duration. "" means no faults.
func ParseFaults(spec string) (Faults, error) {
	var f Faults
	seen := map[string]bool{}
	for item := range strings.SplitSeq(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, v, ok := strings.Cut(item, "=")
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		if !ok || v == "" {
			return Faults{}, fmt.Errorf("mqemu: fault %q: want key=value", item)
		}
		if k == "duplicate" {
			k = "dup"
		}
		if seen[k] {
			return Faults{}, fmt.Errorf("mqemu: fault %q given twice", k)
		}
		seen[k] = true
		switch k {
		case "dup", "expire", "error":
			p, err := strconv.ParseFloat(v, 64)
			if err != nil || math.IsNaN(p) || p < 0 || p > 1 {
				return Faults{}, fmt.Errorf("mqemu: fault %s=%q: want a probability between 0 and 1", k, v)
			}
			switch k {
			case "dup":
				f.DuplicateRate = p
			case "expire":
				f.ExpireRate = p
			default:
				f.ErrorRate = p
			}
		case "latency":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return Faults{}, fmt.Errorf("mqemu: fault latency=%q: want a non-negative duration such as 20ms", v)
			}
			f.Latency = d
		default:
			return Faults{}, fmt.Errorf("mqemu: unknown fault %q (want dup, expire, error or latency)", k)
		}
	}
	return f, nil
}

// FaultsFromEnv parses the MQEMU_FAULTS variable through getenv
// (os.Getenv in production); unset means no faults.
func FaultsFromEnv(getenv func(string) string) (Faults, error) {
	f, err := ParseFaults(getenv(FaultsEnv))
	if err != nil {
		return Faults{}, fmt.Errorf("%s: %w", FaultsEnv, err)
	}
	return f, nil
}

// String renders f in the ParseFaults format; "none" for the zero value.
func (f Faults) String() string {
	var parts []string
	if f.DuplicateRate > 0 {
		parts = append(parts, "dup="+strconv.FormatFloat(f.DuplicateRate, 'g', -1, 64))
	}
	if f.ExpireRate > 0 {
		parts = append(parts, "expire="+strconv.FormatFloat(f.ExpireRate, 'g', -1, 64))
	}
	if f.ErrorRate > 0 {
		parts = append(parts, "error="+strconv.FormatFloat(f.ErrorRate, 'g', -1, 64))
	}
	if f.Latency > 0 {
		parts = append(parts, "latency="+f.Latency.String())
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

func (f Faults) validate() error {
	for _, r := range []struct {
		name string
		p    float64
	}{{"DuplicateRate", f.DuplicateRate}, {"ExpireRate", f.ExpireRate}, {"ErrorRate", f.ErrorRate}} {
		if math.IsNaN(r.p) || r.p < 0 || r.p > 1 {
			return fmt.Errorf("mqemu: Faults.%s %v: want a probability between 0 and 1", r.name, r.p)
		}
	}
	if f.Latency < 0 {
		return fmt.Errorf("mqemu: Faults.Latency %v: must not be negative", f.Latency)
	}
	return nil
}

// withDefaults validates cfg and fills zero fields with the defaults.
func (cfg Config) withDefaults() (Config, error) {
	if len(cfg.Credentials) == 0 {
		return cfg, errors.New("mqemu: Config.Credentials: at least one key pair is required")
	}
	secrets := map[string]string{}
	for i, c := range cfg.Credentials {
		if c.AccessKey == "" || c.SecretKey == "" {
			return cfg, fmt.Errorf("mqemu: Config.Credentials[%d]: AccessKey and SecretKey must both be set", i)
		}
		if s, dup := secrets[c.AccessKey]; dup && s != c.SecretKey {
			return cfg, fmt.Errorf("mqemu: Config.Credentials[%d]: access key listed twice with different secrets", i)
		}
		secrets[c.AccessKey] = c.SecretKey
	}
	for _, t := range cfg.Topics {
		if err := validTopicName(t); err != nil {
			return cfg, fmt.Errorf("mqemu: Config.Topics: %w", err)
		}
	}
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"InvisibleTime", &cfg.InvisibleTime, DefaultInvisibleTime},
		{"OrderlyInvisibleTime", &cfg.OrderlyInvisibleTime, DefaultOrderlyInvisibleTime},
		{"MaxClockSkew", &cfg.MaxClockSkew, DefaultMaxClockSkew},
		{"MaxLongPoll", &cfg.MaxLongPoll, DefaultMaxLongPoll},
		{"PersistInterval", &cfg.PersistInterval, DefaultPersistInterval},
	}
	for _, d := range durations {
		if *d.v < 0 {
			return cfg, fmt.Errorf("mqemu: Config.%s %v: must not be negative", d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if cfg.MaxDeliveries < 0 {
		return cfg, fmt.Errorf("mqemu: Config.MaxDeliveries %d: must not be negative", cfg.MaxDeliveries)
	}
	if cfg.MaxDeliveries == 0 {
		cfg.MaxDeliveries = DefaultMaxDeliveries
	}
	if err := cfg.Faults.validate(); err != nil {
		return cfg, err
	}
	if cfg.PersistPath != "" {
		// Fail at start, not at the first save minutes later.
		if fi, err := os.Stat(filepath.Dir(cfg.PersistPath)); err != nil || !fi.IsDir() {
			return cfg, fmt.Errorf("mqemu: Config.PersistPath %q: directory does not exist", cfg.PersistPath)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

func validTopicName(name string) error {
	if name == "" {
		return errors.New("empty topic name")
	}
	if len(name) > 255 || strings.ContainsAny(name, "/?#%& \t\r\n") {
		return fmt.Errorf("topic name %q: must be at most 255 characters without / ? # %% & or spaces", name)
	}
	return nil
}
