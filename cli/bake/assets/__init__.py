"""Data folders shipped in the wheel (components, image-recipes, ...).

Load them only through bake.templates.
"""
