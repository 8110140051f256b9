package datadog

// RaceEnabled lets the external tests scale down under -race.
const RaceEnabled = raceEnabled
