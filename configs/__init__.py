"""Bundled infrastructure configs (package data): accelerate/*.yaml, deepspeed/*.json."""
