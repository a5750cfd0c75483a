//go:build race

package c2s_test

const raceEnabled = true
