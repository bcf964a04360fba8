"""An Edifice-compatible ENT on loopback: the demo target, the test target, the drill ground.

It speaks the real routes, JSON shapes, status codes and security behaviour of the Edifice platform for
the parts pcnctl drives, backed by SQLite. It is not a mock: it keeps state, enforces rights and can be
overloaded on purpose (latency, capacity, faults).
"""
