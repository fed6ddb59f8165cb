#!/bin/sh
# Private keys (PEM, OpenSSH, PGP) and AWS access key ids committed to the target.
# Prints where they are, never the secret itself.
. "$(dirname "$0")/lib.sh"

# Binary files (-I) and the skipped folders (lib.sh) are left out; symlinks are not followed.
grep -rnIoE $grep_skip -e '-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----' . \
    >"$work/pem" 2>>"$work/errors"
[ $? -le 1 ] || [ -s "$work/errors" ] || fail "grep failed"
# -w: an id inside a longer run of capitals or digits is something else.
grep -rnIowE $grep_skip -e '(AKIA|ASIA)[0-9A-Z]{16}' . \
    >"$work/aws" 2>>"$work/errors"
[ $? -le 1 ] || [ -s "$work/errors" ] || fail "grep failed"

# grep prints ./path:line:match; the match holds no colon, so the greedy path is exact.
sed -n 's|^\./\(.*\):\([0-9][0-9]*\):-----BEGIN \(.*\)-----$|\1:\2: private key (\3)|p' \
    "$work/pem" >>"$work/hits"
sed -n 's|^\./\(.*\):\([0-9][0-9]*\):\(A[KS]IA\)[0-9A-Z]\{12\}\([0-9A-Z]\{4\}\)$|\1:\2: AWS access key id (\3...\4)|p' \
    "$work/aws" >>"$work/hits"
finish
