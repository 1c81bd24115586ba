"""Authoritative DNS: the answering view, zone semantics, wire format and listeners."""
