# Shared by the basic checks; sourced, not run. POSIX sh, minbase tools only.
#
# Contract of every check: `check.sh [DIR]` scans DIR (default /target) and
#   exits 0 when it found nothing, 1 when it found something (one line per finding on
#   stdout, `path:line: what` or `path: what`, paths relative to DIR; the same lines go to
#   $PHALANX_RESULTS/hits.txt, default /results), and 2 when it could not check
#   everything (unreadable files, DIR missing, results not writable).
# It writes only to the results directory and to a private directory under /tmp, so it
# runs on a read-only root filesystem.

set -u
export LC_ALL=C

check=${0##*/}
check=${check%.sh}
target=${1:-/target}
results=${PHALANX_RESULTS:-/results}

# Folders that hold version-control data, build output or downloaded dependencies, not
# the project's own files: skipped at any depth (space-separated names; override with
# PHALANX_SKIP_DIRS, empty to scan everything).
skip_dirs=${PHALANX_SKIP_DIRS-.git target node_modules}

# grep options that skip those folders, for `grep -r $grep_skip ...` (unquoted on purpose).
grep_skip=
for dir in $skip_dirs; do
    grep_skip="$grep_skip --exclude-dir=$dir"
done

# find expression that prunes them, for `find . $find_skip -o ...` (unquoted on purpose).
find_skip="-false"
for dir in $skip_dirs; do
    find_skip="$find_skip -o -name $dir -type d -prune"
done

fail() {
    printf '%s: %s\n' "$check" "$*" >&2
    exit 2
}

[ -d "$target" ] || fail "$target is not a directory"
cd "$target" || fail "cannot enter $target"
: >"$results/hits.txt" 2>/dev/null || fail "cannot write $results/hits.txt"
work=$(mktemp -d "${TMPDIR:-/tmp}/$check.XXXXXX") || fail "cannot create a temporary directory"
trap 'rm -rf "$work"' EXIT
: >"$work/hits"
: >"$work/errors"

# Reports what the check collected in $work/hits (findings) and $work/errors (what it
# could not read), then exits with the contract's code. Findings win over errors: they
# are real even if the scan was incomplete.
finish() {
    if [ -s "$work/errors" ]; then
        printf '%s: could not check everything:\n' "$check" >&2
        head -n 20 "$work/errors" >&2
    fi
    if [ -s "$work/hits" ]; then
        sort -u "$work/hits" | tee "$results/hits.txt"
        printf '%s: %s finding(s)\n' "$check" "$(sort -u "$work/hits" | wc -l)" >&2
        exit 1
    fi
    [ -s "$work/errors" ] && exit 2
    printf '%s: nothing found in %s\n' "$check" "$target" >&2
    exit 0
}
