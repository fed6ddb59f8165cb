# Phalanx's swarm task wrapper, run by the static busybox at /.phalanx/busybox as the
# suite's entrypoint: "$@" is the image's entrypoint and command (or the suite's command).
#
# A task's files cannot be copied out through the swarm manager, so once the tool is done
# this prints /results, as a base64 tar, between two marker lines on stdout; Phalanx takes
# the frame out of the log (src/engine/swarm/frame.rs). The marker's nonce is not left in
# the tool's environment.
bb=/.phalanx/busybox
nonce=$PHALANX_FRAME
unset PHALANX_FRAME
if [ "$#" -eq 0 ]; then
    echo "phalanx: the image has no entrypoint or command and the suite sets none" >&2
    code=127
else
    "$@" &
    child=$!
    # Stopping the task (a timeout, a cancel) sends SIGTERM to the init, which hands it to
    # this shell: pass it on, and still send whatever the tool wrote before it stopped.
    trap 'kill -TERM "$child" 2>/dev/null' TERM INT
    while :; do
        wait "$child"
        code=$?
        kill -0 "$child" 2>/dev/null || break
    done
fi
trap '' TERM INT
# Whatever the tool left running must not write into the frame or into /results now
# (the shell's own kill: -1 spares only the caller).
kill -KILL -1 2>/dev/null
# How many processes the memory limit killed (cgroup v2, else v1): the swarm's task
# state cannot say, and a tool killed that way must end as out of memory, as on Docker.
oom=0
for events in /sys/fs/cgroup/memory.events /sys/fs/cgroup/memory/memory.oom_control; do
    if [ -r "$events" ]; then
        oom=$($bb awk '$1 == "oom_kill" { print $2 }' "$events")
        break
    fi
done
set -o pipefail
printf '\n%s begin\n' "$nonce"
cd / && $bb tar -c results 2>/dev/null | $bb base64
printf '%s end %s %s\n' "$nonce" "$?" "${oom:-0}"
exit "$code"
