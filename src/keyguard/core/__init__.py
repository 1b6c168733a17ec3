"""Shared types every layer may use: leaf modules that import nothing of Keyguard's but the
error tree. Who is calling (:mod:`.principal`), which operation a request is
(:mod:`.operations`), what is known about one request (:mod:`.request`), what the monitor keeps
of it (:mod:`.observation`), the pipeline's seams (:mod:`.hooks`), client addresses
(:mod:`.netaddr`), the settings base (:mod:`.settings`), times (:mod:`.times`) and background
loops (:mod:`.tasks`)."""
