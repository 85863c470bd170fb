"""Bundled recipes (package data): recipes/toy/<method>.yaml, recipes/<model>/<method>.yaml."""
