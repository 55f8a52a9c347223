"""Idempotent operations; each returns a Step: a read-only probe, a pure decision, an action."""
