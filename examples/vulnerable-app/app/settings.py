"""Settings for the notes service.

DO NOT DEPLOY. The credentials below are FAKE, made up for Phalanx's demo: they match the
shape of an AWS access key so that secret scanners report them (see FLAWS.md, secret-aws).
"""

DATABASE = "notes.db"

# FLAW secret-aws: a hard-coded cloud credential (FAKE; read it from the environment instead).
AWS_ACCESS_KEY_ID = "AKIAFAKEPHALANXDEMO0"
AWS_SECRET_ACCESS_KEY = "fake/PhalanxDemoOnly/NotARealSecretKey00"
