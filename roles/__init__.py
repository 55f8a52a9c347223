"""Roles: each directory is one role (role.py, defaults.yml, templates/, spec.py)."""
