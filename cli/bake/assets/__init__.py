"""Data folders shipped in the wheel (components, image-recipes, ...); load them via bake.templates."""
