"""Procedural synthetic talking heads with exact ground truth (export3d synth)."""
