"""The demo plugin's Alembic branch (label ``demo``); alembic reads these files by path, not as a package."""
