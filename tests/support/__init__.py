"""Shared test support: the stand-in mirror fixtures and a fake baked-image tree builder."""
