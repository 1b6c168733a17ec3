"""``keyguard serve``'s process model: a supervisor, pre-forked workers, reloads and drains."""
