"""The tamper-evident audit log: hash-chained records, Ed25519-signed checkpoints, a batched
durable writer, verification and export (see ``docs/monitoring.md``)."""
