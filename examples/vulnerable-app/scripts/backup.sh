#!/bin/bash
# Backs up the notes database. DO NOT USE: deliberately unsafe (see FLAWS.md).
# Usage: backup.sh DEST_DIR [NAME]

dest=$1
name=${2:-notes}

# FLAW sh-cd: if cd fails, the rm below runs in the wrong folder.
cd $dest
# FLAW sh-unquoted: unquoted expansions split on spaces and expand globs.
rm -rf $name.bak
cp ../notes.db $name.bak
echo "backed up to $dest/$name.bak"
