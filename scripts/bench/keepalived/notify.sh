#!/bin/sh
# keepalived's notify hook in compare-keepalived.sh: records when keepalived entered STATE,
# runs conntrackd's primary-backup.sh as shipped (only its paths adapted to this instance) and
# records when that finished. keepalived.conf: notify_master "notify.sh LOG SCRIPT primary".
log=$1 script=$2 state=$3
echo "start $state $(date +%s.%N)" >>"$log"
"$script" "$state" >>"$log.out" 2>&1
rc=$?
echo "done $state $(date +%s.%N) rc=$rc" >>"$log"
