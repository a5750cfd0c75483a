package blocking

import "errors"

// errBadTTL means the cache_ttl setting is not a non-negative duration.
var errBadTTL = errors.New("blocking: cache_ttl must be a duration such as \"5s\"")
