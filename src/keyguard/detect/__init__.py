"""Behavioural detection of credential abuse (LLMjacking): baselines, rules, replay."""
