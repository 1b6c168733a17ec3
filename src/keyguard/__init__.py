"""Keyguard: a zero-trust security gateway for Azure OpenAI."""

__version__ = "0.1.0"
