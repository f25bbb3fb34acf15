"""Falcon resources: parse, authenticate, call a handler, return JSON. No SQL, no logic."""
