"""The plumbing to the ENT: the one HTTP client, the fan-out and its limiter, the platform protocol, the
Edifice driver, and how pcnctl authenticates (secrets, the session cache)."""
