"""Token-based limits, quotas and budgets that hold exactly: reserve before, settle after.

=================  ==========================================================================
``settings``       the ``limits:`` configuration section
``windows``        fixed UTC windows: minute, hour, day, month (pure)
``model``          lines, the fit check, remaining counts, soft thresholds (pure)
``rules``          configured rules -> the lines of one request
``prices``         the price table -> integer micro-currency costs (pure)
``tokenizer``      tiktoken encodings from packaged, hash-checked BPE files
``estimator``      a request's token estimate; the default ``max_tokens`` cap
``backend``        the backend contract and the in-process backend
``redis_backend``  the Redis backend (Lua scripts in ``lua/``)
``resp``           the minimal pipelined Redis client it talks through
``persist``        the in-process backend with quotas kept in the store
``admission``      the pipeline hook: admit (reserve or refuse) and settle
``usage``          the usage read-out: the counters that apply, read without charging
``factory``        settings -> a started admission hook
=================  ==========================================================================

See ``docs/limits.md`` for the model and a worked example.
"""
