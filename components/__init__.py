"""Marks this data folder as the importable resource package bake.assets.<folder> (no code)."""
