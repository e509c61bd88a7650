//go:build !race

package workerapp

const raceEnabled = false
