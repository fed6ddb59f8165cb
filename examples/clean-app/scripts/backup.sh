#!/bin/bash
# Backs up the notes database.
# Usage: backup.sh DEST_DIR [NAME]
set -euo pipefail

dest=$1
name=${2:-notes}

cd "$dest" || exit 1
rm -f -- "$name.bak"
cp -- ../notes.db "$name.bak"
echo "backed up to $dest/$name.bak"
