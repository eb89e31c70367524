package store

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// ParseDuration reads a duration as the DNS settings take it (a query log's keep time, a
// blocklist's refresh interval): whole days ("7d", at most 7 as none of them is longer) or
// a Go duration ("36h", "90m"). The caller validates the range.
func ParseDuration(s string) (time.Duration, error) {
	days, ok := strings.CutSuffix(s, "d")
	if !ok {
		return time.ParseDuration(s)
	}
	n, err := strconv.Atoi(days)
	if err != nil || days == "" || days[0] == '+' || days[0] == '-' || n > 7 {
		return 0, errors.New("not a number of days")
	}
	return time.Duration(n) * 24 * time.Hour, nil
}

// DurationText writes d in its largest whole unit, as ParseDuration reads it: "7d", "36h",
// "90m".
func DurationText(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	case d%time.Hour == 0:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	}
	return strconv.Itoa(int(d/time.Minute)) + "m"
}
