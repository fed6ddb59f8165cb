#!/bin/sh
# Unresolved merge conflict markers (<<<<<<<, |||||||, >>>>>>> at the start of a line,
# followed by a space or the end of the line) left in the target's text files.
# `=======` alone is not reported: it is also a heading underline in reST and Markdown.
. "$(dirname "$0")/lib.sh"

grep -rnIoE $grep_skip -e '^(<{7}|\|{7}|>{7})( |$)' . \
    >"$work/raw" 2>>"$work/errors"
[ $? -le 1 ] || [ -s "$work/errors" ] || fail "grep failed"

sed -n 's|^\./\(.*\):\([0-9][0-9]*\):\([<>|]\{7\}\) \{0,1\}$|\1:\2: merge conflict marker \3|p' \
    "$work/raw" >>"$work/hits"
finish
