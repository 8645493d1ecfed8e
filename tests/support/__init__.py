"""Shared test helpers (the post's reference code, the host-sync guard)."""
