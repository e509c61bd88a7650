package syncevent

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// GenOptions shapes a batch of demo/load messages.
type GenOptions struct {
	// Count is the number of messages. Zero or negative yields none.
	Count int
	// DistinctKeys is how many different valid records the batch holds; the
	// other valid messages republish keys that appeared earlier in the
	// batch. Zero, or more than the valid messages, means every valid
	// message has its own key.
	DistinctKeys int
	// ChangedRate is the share (0..1) of republished messages whose payload
	// differs from the first version (a conflict); the rest are duplicates.
	ChangedRate float64
	// BadRate is the share (0..1) of messages that are malformed and must
	// be quarantined. Values outside 0..1 are clamped.
	BadRate float64
	// Seed makes the batch reproducible: equal options give equal output.
	Seed int64
	// KeyPrefix is put in front of every key, so runs do not collide with
	// records left by earlier runs. May be empty.
	KeyPrefix string
}

// OutMessage is one message to publish.
type OutMessage struct {
	Key  string
	Tag  string
	Body []byte
	// Kind is the expected fate: "new" (first version of a key), "dup"
	// (same content as the first version, possibly re-serialised), "changed"
	// (same key, different content: a conflict) or "bad:<reason>" where
	// reason is the InvalidError.Reason that Parse returns for it.
	Kind string
}

// Kinds of generated messages.
const (
	KindNew       = "new"
	KindDup       = "dup"
	KindChanged   = "changed"
	KindBadPrefix = "bad:"
)

// genReasons are the malformations Generate produces.
var genReasons = []string{
	ReasonBadJSON, ReasonMissingPatientID, ReasonBadTimestamp, ReasonMissingKey,
	ReasonInvalidUTF8, ReasonFieldTooLong, ReasonBadField,
}

// BadReasons returns the InvalidError reasons of the malformed messages
// Generate produces.
func BadReasons() []string { return slices.Clone(genReasons) }

// GenCounts returns how many messages of each kind Generate(o) produces:
// Generate and its tests agree on the rounding through this one function.
func GenCounts(o GenOptions) (newN, dupN, changedN, badN int) {
	if o.Count <= 0 {
		return 0, 0, 0, 0
	}
	badN = int(math.Round(clamp01(o.BadRate) * float64(o.Count)))
	good := o.Count - badN
	newN = o.DistinctKeys
	if newN <= 0 || newN > good {
		newN = good
	}
	repub := good - newN
	changedN = int(math.Round(clamp01(o.ChangedRate) * float64(repub)))
	return newN, repub - changedN, changedN, badN
}

func clamp01(f float64) float64 {
	if math.IsNaN(f) || f < 0 {
		return 0
	}
	return min(f, 1)
}

// Generate builds a reproducible batch of realistic clinic sync messages:
// invented names, IDs and notes, the timestamp styles real devices send,
// republished records and malformed messages in the requested proportions.
// Republished keys always come after their first version.
func Generate(o GenOptions) []OutMessage {
	newN, dupN, changedN, badN := GenCounts(o)
	if o.Count <= 0 {
		return nil
	}
	g := &generator{rng: rng{state: uint64(o.Seed)}, prefix: o.KeyPrefix}

	// Which republishes change content: an exact count, randomly placed.
	repub := dupN + changedN
	changed := make([]bool, repub)
	for _, i := range g.rng.perm(repub)[:changedN] {
		changed[i] = true
	}
	// Which positions of the batch are malformed.
	bad := make([]bool, o.Count)
	for _, i := range g.rng.perm(o.Count)[:badN] {
		bad[i] = true
	}

	out := make([]OutMessage, 0, o.Count)
	leftNew, leftRepub, repubIdx, badIdx := newN, repub, 0, 0
	for pos := range o.Count {
		if bad[pos] {
			out = append(out, g.bad(badIdx))
			badIdx++
			continue
		}
		// A republish needs an earlier record; otherwise choose in
		// proportion to what is left so both kinds spread over the batch.
		isNew := len(g.records) == 0 || leftRepub == 0 ||
			(leftNew > 0 && g.rng.intn(leftNew+leftRepub) < leftNew)
		if isNew {
			out = append(out, g.newRecord())
			leftNew--
			continue
		}
		out = append(out, g.republish(changed[repubIdx]))
		repubIdx++
		leftRepub--
	}
	return out
}

// rng is splitmix64: tiny, and its sequence is fixed by its definition, so a
// seed gives the same batch on every Go release (math/rand makes no such
// promise for all its methods).
type rng struct{ state uint64 }

func (r *rng) next() uint64 {
	r.state += 0x9e3779b97f4a7c15
	z := r.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

func (r *rng) intn(n int) int {
	if n <= 0 {
		return 0
	}
	return int(r.next() % uint64(n))
}

func (r *rng) chance(p float64) bool { return float64(r.next()>>11)/(1<<53) < p }

func (r *rng) perm(n int) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	for i := n - 1; i > 0; i-- {
		j := r.intn(i + 1)
		p[i], p[j] = p[j], p[i]
	}
	return p
}

func pick[T any](r *rng, xs []T) T { return xs[r.intn(len(xs))] }

// record is the first version of a generated key, kept so republishes can
// repeat or amend it.
type record struct {
	key       string
	patientID field
	notes     *string
	ts        field
	extras    []field
	revisions int
}

// field is one JSON member with its value already encoded.
type field struct{ name, raw string }

type generator struct {
	rng       rng
	prefix    string
	records   []*record
	badOffset int
}

var (
	firstNames = []string{"Amina", "José", "Wei", "Olga", "Liam", "Fatima", "Jürgen", "Priya", "Kwame", "Sofia", "Mateus", "Hana", "Zoë", "Ravi", "Ingrid", "Tomás"}
	lastNames  = []string{"Okafor", "García", "Chen", "Ivanova", "O'Brien", "Haddad", "Müller", "Sharma", "Mensah", "Rossi", "Souza", "Tanaka", "Dubois", "Nair", "Lindqvist", "Núñez"}
	clinicians = []string{"Dr. Adeyemi", "Dr. Kowalski", "Nurse Patel", "Dr. Lefèvre", "NP Johansson", "Dr. Yamamoto"}
	complaints = []string{"persistent cough for %d days", "mild fever (38.%d °C)", "lower back pain, %d/10", "follow-up after %d weeks of metformin", "headache since %d days", "rash on left forearm, %d cm", "routine prenatal visit, week %d"}
	plans      = []string{"Advised rest and fluids.", "Prescribed paracetamol 500 mg as needed.", "Referred to district hospital for X-ray.", "Blood sample taken; results pending.", "Review in two weeks.", "Counselled on diet and exercise.", "No medication changes."}
	devices    = []string{"tab-01", "tab-02", "tab-07", "kiosk-3", "phone-12"}
)

func (g *generator) newRecord() OutMessage {
	clinic, device := g.rng.intn(40)+1, g.rng.intn(8)+1
	rec := &record{key: fmt.Sprintf("%sclinic%02d-dev%d-%06d", g.prefix, clinic, device, len(g.records)+1)}

	// Identifiers as clinics really send them: string MRNs in a few shapes,
	// sometimes a bare number.
	switch g.rng.intn(4) {
	case 0:
		rec.patientID = field{"patientId", strconv.Itoa(100000 + g.rng.intn(9_900_000))}
	case 1:
		rec.patientID = field{"patientId", quote(fmt.Sprintf("CL%02d-%06d", clinic, g.rng.intn(1_000_000)))}
	default:
		rec.patientID = field{"patientId", quote(fmt.Sprintf("P%08d", g.rng.intn(100_000_000)))}
	}
	if !g.rng.chance(0.1) { // some visits carry no notes at all
		n := g.note()
		rec.notes = &n
	}
	rec.ts = field{"deviceTimestamp", g.timestamp()}
	if g.rng.chance(0.5) {
		rec.extras = append(rec.extras, field{"deviceId", quote(pick(&g.rng, devices))})
	}
	if g.rng.chance(0.3) {
		rec.extras = append(rec.extras, field{"schemaVersion", "2"})
	}
	if g.rng.chance(0.2) {
		rec.extras = append(rec.extras, field{"vitals", fmt.Sprintf(`{"bp":"%d/%d","hr":%d,"spo2":%d}`,
			100+g.rng.intn(60), 60+g.rng.intn(30), 55+g.rng.intn(50), 90+g.rng.intn(10))})
	}
	g.records = append(g.records, rec)
	return OutMessage{Key: rec.key, Tag: Tag, Body: rec.body(rec.notes, false, false), Kind: KindNew}
}

func (g *generator) note() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: ", pick(&g.rng, firstNames), pick(&g.rng, lastNames))
	fmt.Fprintf(&b, pick(&g.rng, complaints), 1+g.rng.intn(9))
	b.WriteString(". ")
	b.WriteString(pick(&g.rng, plans))
	if g.rng.chance(0.3) {
		fmt.Fprintf(&b, "\nBP %d/%d, HR %d.", 100+g.rng.intn(60), 60+g.rng.intn(30), 55+g.rng.intn(50))
	}
	b.WriteString(" — ")
	b.WriteString(pick(&g.rng, clinicians))
	return b.String()
}

// timestamp returns an encoded deviceTimestamp in one of the styles devices
// use, within a fortnight of a fixed day (a fixed day keeps output
// reproducible).
func (g *generator) timestamp() string {
	base := time.Date(2025, 3, 3, 7, 0, 0, 0, time.UTC)
	t := base.Add(time.Duration(g.rng.intn(14*24*3600*1000)) * time.Millisecond)
	switch g.rng.intn(6) {
	case 0:
		return strconv.FormatInt(t.UnixMilli(), 10)
	case 1:
		return quote(strconv.FormatInt(t.UnixMilli(), 10))
	case 2:
		return quote(t.Format("2006-01-02T15:04:05.000Z07:00"))
	case 3:
		return quote(t.Format(time.RFC3339))
	case 4:
		return quote(t.In(time.FixedZone("", 3*3600)).Format("2006-01-02T15:04:05.000-07:00"))
	default:
		return quote(t.Format("2006-01-02T15:04:05.000")) // no zone: UTC
	}
}

func (g *generator) republish(change bool) OutMessage {
	rec := g.records[g.rng.intn(len(g.records))]
	if !change {
		// Broker redeliveries are byte-identical; a device that re-sends
		// after a crash re-serialises, with another field order.
		reorder := g.rng.chance(0.5)
		return OutMessage{Key: rec.key, Tag: Tag, Body: rec.body(rec.notes, reorder, reorder), Kind: KindDup}
	}
	// Each amendment is distinct so every conflict is its own version.
	rec.revisions++
	notes := fmt.Sprintf("Amended (rev %d): %s", rec.revisions, g.note())
	if rec.notes != nil {
		notes = *rec.notes + "\n" + notes
	}
	return OutMessage{Key: rec.key, Tag: Tag, Body: rec.body(&notes, false, false), Kind: KindChanged}
}

// body encodes the record. reverse flips the field order and spaced adds
// whitespace: both leave the content, hence the canonical payload, as is.
func (rec *record) body(notes *string, reverse, spaced bool) []byte {
	pd := []field{rec.patientID}
	if notes != nil {
		pd = append(pd, field{"notes", quote(*notes)})
	}
	top := []field{{"patientData", object(pd, reverse, spaced)}, rec.ts}
	top = append(top, rec.extras...)
	return []byte(object(top, reverse, spaced))
}

func object(fs []field, reverse, spaced bool) string {
	sep, colon := ",", ":"
	if spaced {
		sep, colon = ", ", ": "
	}
	parts := make([]string, len(fs))
	for i, f := range fs {
		j := i
		if reverse {
			j = len(fs) - 1 - i
		}
		parts[j] = quote(f.name) + colon + f.raw
	}
	return "{" + strings.Join(parts, sep) + "}"
}

func quote(s string) string { return string(appendString(nil, []byte(s))) }

// bad returns the i-th malformed message; reasons rotate through genReasons
// starting at a random offset, so small batches still mix them.
func (g *generator) bad(i int) OutMessage {
	if i == 0 {
		g.badOffset = g.rng.intn(len(genReasons))
	}
	reason := genReasons[(i+g.badOffset)%len(genReasons)]
	key := fmt.Sprintf("%sbad-%06d", g.prefix, i+1)
	pid := field{"patientId", quote(fmt.Sprintf("P%08d", g.rng.intn(100_000_000)))}
	ts := field{"deviceTimestamp", g.timestamp()}
	notes := field{"notes", quote(g.note())}
	var body string
	switch reason {
	case ReasonBadJSON:
		// A body cut short in transit: any proper prefix of an object is
		// invalid JSON.
		full := object([]field{{"patientData", object([]field{pid, notes}, false, false)}, ts}, false, false)
		cut := 1 + g.rng.intn(len(full)-1)
		for !utf8.RuneStart(full[cut]) { // keep it valid UTF-8 so the JSON error is what shows
			cut--
		}
		body = full[:cut]
	case ReasonMissingPatientID:
		pd := []field{notes}
		if g.rng.chance(0.5) {
			pd = append(pd, field{"patientId", `""`})
		}
		body = object([]field{{"patientData", object(pd, false, false)}, ts}, false, false)
	case ReasonBadTimestamp:
		bogus := pick(&g.rng, []string{`"yesterday"`, `"31/02/2025 10:00"`, `"2025-13-01T00:00:00Z"`, `true`, `""`})
		body = object([]field{{"patientData", object([]field{pid, notes}, false, false)}, {"deviceTimestamp", bogus}}, false, false)
	case ReasonMissingKey:
		key = ""
		body = object([]field{{"patientData", object([]field{pid, notes}, false, false)}, ts}, false, false)
	case ReasonInvalidUTF8:
		// A Latin-1 "é" from a misconfigured device: one byte 0xE9.
		body = object([]field{{"patientData", object([]field{pid, {"notes", "\"Caf\xe9 visit\""}}, false, false)}, ts}, false, false)
	case ReasonFieldTooLong:
		long := field{"patientId", quote(strings.Repeat("X", MaxPatientIDChars+1+g.rng.intn(40)))}
		body = object([]field{{"patientData", object([]field{long, notes}, false, false)}, ts}, false, false)
	default: // ReasonBadField
		body = object([]field{{"patientData", object([]field{{"patientId", "true"}, notes}, false, false)}, ts}, false, false)
	}
	return OutMessage{Key: key, Tag: Tag, Body: []byte(body), Kind: KindBadPrefix + reason}
}
