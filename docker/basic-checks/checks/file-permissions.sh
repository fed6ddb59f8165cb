#!/bin/sh
# World-writable files and directories, and setuid/setgid files, in the target: anyone on
# a machine that checks it out could change them, or they run with someone else's rights.
. "$(dirname "$0")/lib.sh"

# -mindepth 1: the target's own mode is the host's business, not the project's.
# GNU find's `,` evaluates every test, so a file can be reported for several reasons.
find . -mindepth 1 \( $find_skip \) -o \( \
        \( -type f -perm -0002 -printf '%P: world-writable file (mode %m)\n' \) , \
        \( -type d -perm -0002 -printf '%P: world-writable directory (mode %m)\n' \) , \
        \( -type f -perm -4000 -printf '%P: setuid file (mode %m)\n' \) , \
        \( -type f -perm -2000 -printf '%P: setgid file (mode %m)\n' \) \
    \) >>"$work/hits" 2>>"$work/errors"
[ $? -eq 0 ] || [ -s "$work/errors" ] || fail "find failed"
finish
