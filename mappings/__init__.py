"""Mapping presets shipped as package data: one TOML file per preset, found by `connector.mapping`."""
