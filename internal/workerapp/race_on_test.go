//go:build race

package workerapp

// raceEnabled: the test binary, and the embedded Temporal server in it,
// run under the race detector.
const raceEnabled = true
