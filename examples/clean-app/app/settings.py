"""Settings for the notes service: secrets come from the environment, never the code."""

import os

DATABASE = os.environ.get("NOTES_DATABASE", "notes.db")
DATA_ROOT = os.path.realpath(os.environ.get("NOTES_DATA_ROOT", "/srv/notes"))
AWS_ACCESS_KEY_ID = os.environ.get("AWS_ACCESS_KEY_ID")
AWS_SECRET_ACCESS_KEY = os.environ.get("AWS_SECRET_ACCESS_KEY")
