# shellcheck shell=bash
# What scripts/bench, scripts/bench-pg and scripts/bench-s3 share; sourced, not run:
#   . "$REPO/scripts/bench-lib.sh"
#
# How they measure:
#   - Each contender runs RUNS times (odd: an even RUNS is rounded up), in alternation
#     (A B C A B C ...), so a change in background load hits them all alike. Each run
#     is timed by /usr/bin/time (wall, user, sys, peak RSS of the largest process it
#     waited for). A contender's figures are the median wall, the median CPU
#     (user + sys) and the peak RSS (the largest of its runs); ratios are median wall
#     over median wall.
#   - A busy machine is not scored. Before the first timed run, bench_idle_check
#     samples /proc/stat for 3 s: when the other processes used more than 0.15 CPU on
#     average, it prints what it saw and exits 3 (BENCH_ALLOW_BUSY=1 goes on, and
#     every verdict is then UNSCORED (busy)). During the runs, the CPU time the rest of
#     the machine used is measured around each run (all CPU time in /proc/stat, less
#     the run's own user + sys): when the median run of any contender saw more than 10%
#     of its wall time used by other processes, every verdict is UNSCORED (busy) and
#     the exit status is 3. Up to 0.05 CPU s is always allowed: /proc/stat counts in
#     ticks of 10 ms, and a run of a few hundredths of a second (b3sum of a small
#     object) would otherwise be busy on an idle machine. A server the script starts for the benchmark (PostgreSQL,
#     the S3 test server) is expected to work: set BENCH_SERVER_PID to its pid and its
#     process tree (its children included, live or reaped) is measured apart, printed,
#     and not counted as other processes.
#   - Goals are kept by bench_goal and printed together at the end by bench_finish,
#     one line each, in the form (for grep)
#       GOAL <n> <name>: <value> (target <op> <limit>): PASS|FAIL|UNSCORED (busy)
#     and bench_finish exits 0 when all PASS, 1 when any FAIL (or a check failed),
#     3 when busy.
#
# Functions:
#   bench_runs DEFAULT          sets RUNS from RUNS (or BENCH_RUNS), DEFAULT, made odd
#   bench_apt_install PKG...    apt-get install (refreshing the lists when needed)
#   bench_need_time             installs GNU time when /usr/bin/time is missing
#   bench_build                 VAULT: the release binary, built; or BENCH_VAULT as it is
#   bench_machine               prints the machine: CPUs, CPU model, RAM, kernel
#   bench_idle_check            the 3 s sample before the first timed run
#   bench_timed C OUT LOG CMD.. runs CMD once for contender C, records and prints it
#   bench_stats C               "median_wall median_cpu peak_rss_kib runs"
#   bench_goal N NAME VALUE OP LIMIT [UNIT]
#   bench_check_failed MESSAGE  a failed check that is not a goal: bench_finish exits 1
#   bench_finish                prints the goals and exits
#   bench_rm_store DIR, bench_toml_str S, bench_stream_sh BYTES, bench_fmt ...
# Exit statuses: 0 all PASS, 1 a FAIL or an error, 2 bad usage, 3 busy machine.

BENCH_IDLE_SECS=3          # length of the idle sample
BENCH_IDLE_LIMIT=0.15      # CPUs the other processes may use on average during it
BENCH_RUN_BUSY_LIMIT=0.10  # share of a median run's wall time other processes may use
BENCH_RUN_BUSY_FLOOR=0.05  # CPU s always allowed: the noise of the /proc/stat ticks
BENCH_TIMEFMT='%e %U %S %M' # wall s, user s, sys s, max RSS KiB
BENCH_HZ=$(getconf CLK_TCK)
BENCH_BUSY=0               # 1 once the machine was seen busy: every verdict UNSCORED
BENCH_SERVER_PID=${BENCH_SERVER_PID:-}
declare -A BENCH_RUNLOG=() # contender -> its runs, one "wall user sys rss other server" a line
BENCH_CONTENDERS=()        # in the order first recorded
BENCH_GOALS=()             # n, name, value, op, limit, unit; separated by BENCH_SEP

bench_die() { echo "error: $*" >&2; exit 1; }

# bench_runs DEFAULT: RUNS (or BENCH_RUNS) from the environment, else DEFAULT; a
# positive integer, rounded up to an odd number so there is one median run.
bench_runs() {
    RUNS=${RUNS:-${BENCH_RUNS:-$1}}
    [[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "error: RUNS must be a positive integer (got '$RUNS')" >&2; exit 2; }
    if ((RUNS % 2 == 0)); then
        echo "note: RUNS=$RUNS is even; running $((RUNS + 1)) so that one run is the median" >&2
        RUNS=$((RUNS + 1))
    fi
}

bench_apt_install() {
    local sudo=
    [[ $(id -u) -eq 0 ]] || sudo=sudo
    echo "installing $* with apt-get ..." >&2
    # Only refresh the package lists when the install fails without them.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "$@" >&2 ||
        { $sudo apt-get update >&2 && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "$@" >&2; } ||
        bench_die "apt-get could not install $*"
}

bench_need_time() { [[ -x /usr/bin/time ]] || bench_apt_install time; }

# bench_build: sets VAULT and VAULT_BUILD. The release binary, built now; or the binary
# BENCH_VAULT names, not built (the suite runs the scripts on its debug build, small
# and unscored, to check that every goal is printed).
bench_build() {
    if [[ -n ${BENCH_VAULT:-} ]]; then
        [[ -x $BENCH_VAULT ]] || { echo "error: BENCH_VAULT=$BENCH_VAULT is not an executable file" >&2; exit 2; }
        VAULT=$BENCH_VAULT
        VAULT_BUILD="given by BENCH_VAULT"
    else
        echo "building the release binary ..." >&2
        (cd "$REPO" && cargo build --release --locked >&2)
        VAULT=$REPO/target/release/vault
        VAULT_BUILD="release build"
    fi
}

bench_machine() {
    echo "machine: $(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), $(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo) RAM, Linux $(uname -r)"
}

bench_toml_str() { local s=${1//\\/\\\\}; printf '"%s"' "${s//\"/\\\"}"; }

# Stores are write-once (files mode 0444): make them writable to remove them.
bench_rm_store() { chmod -R u+w "$1" 2>/dev/null || true; rm -rf "$1"; }

# bench_stream_sh BYTES: a sh command printing BYTES incompressible random bytes
# (openssl rand in 64 MiB chunks, else /dev/urandom), made on the fly, no file.
bench_stream_sh() {
    local bytes=$1 chunk=$((64 * 1024 * 1024))
    if command -v openssl >/dev/null; then
        echo "i=0; while [ \$i -lt $(((bytes + chunk - 1) / chunk)) ]; do openssl rand $chunk; i=\$((i+1)); done | head -c $bytes"
    else
        echo "head -c $bytes /dev/urandom"
    fi
}

# bench_fmt FORMAT ARGS...: printf with awk's number formatting (no locale surprises).
bench_fmt() { awk -v f="$1" 'BEGIN { for (i = 2; i < ARGC; i++) a[i - 1] = ARGV[i]
    printf f, a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8] }' "$@"; }

# --- CPU accounting -----------------------------------------------------------------
# CPU seconds the whole machine has used so far (user, nice, system, irq, softirq, steal).
bench_total_cpu() { awk -v hz="$BENCH_HZ" '/^cpu / { printf "%.2f\n", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat; }

# Every process: "pid ppid own_ticks reaped_children_ticks comm".
bench_snapshot() {
    { cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk '{
        c = $0; sub(/^[^(]*\(/, "", c); sub(/\) [^)]*$/, "", c)
        s = $0; sub(/^.*\) /, "", s); split(s, f, " ")
        print $1, f[2], f[12] + f[13], f[14] + f[15], c }'
}

# bench_tree_ticks ROOT: CPU ticks of ROOT and its descendants, with their reaped
# children, from a snapshot on stdin (0 without ROOT).
bench_tree_ticks() {
    awk -v root="$1" '{ ppid[$1] = $2; t[$1] = $3 + $4 }
        END { if (root == "" || !(root in t)) { print 0; exit }
              in_tree[root] = 1
              do { more = 0
                   for (p in ppid) if (!(p in in_tree) && (ppid[p] in in_tree)) { in_tree[p] = 1; more = 1 }
              } while (more)
              for (p in in_tree) s += t[p]
              print s }'
}

bench_server_cpu() {
    if [[ -z $BENCH_SERVER_PID ]]; then echo 0; return; fi
    bench_snapshot | bench_tree_ticks "$BENCH_SERVER_PID" | awk -v hz="$BENCH_HZ" '{ printf "%.2f\n", $1 / hz }'
}

# bench_idle_check: sample the machine for BENCH_IDLE_SECS before the first timed run.
bench_idle_check() {
    local s1 s2 t1 t2 self1 self2 srv1 srv2 report
    s1=$(bench_snapshot); t1=$(bench_total_cpu)
    sleep "$BENCH_IDLE_SECS"
    t2=$(bench_total_cpu); s2=$(bench_snapshot)
    self1=$(bench_tree_ticks $$ <<<"$s1"); self2=$(bench_tree_ticks $$ <<<"$s2")
    srv1=$(bench_tree_ticks "$BENCH_SERVER_PID" <<<"$s1"); srv2=$(bench_tree_ticks "$BENCH_SERVER_PID" <<<"$s2")
    # The busiest processes of the window, by their own CPU time (processes that ended
    # within it are not listed: their time shows as what the list does not explain).
    report=$(awk -v hz="$BENCH_HZ" -v self=$$ -v srv="$BENCH_SERVER_PID" -v secs="$BENCH_IDLE_SECS" '
        FNR == 1 { file++ }
        file == 1 { before[$1] = $3; next }
        { d = $3 - before[$1]; if (d < 0.03 * hz * secs) next
          c = $0; sub(/^[^ ]+ [^ ]+ [^ ]+ [^ ]+ /, "", c)
          tag = ($1 == self ? " (this script)" : ($1 == srv ? " (the benchmark server, not counted)" : ""))
          printf "%8.2f CPU  pid %-7s %s%s\n", d / hz / secs, $1, c, tag }' \
        <(echo "$s1") <(echo "$s2") | sort -rn | head -n 8)
    read -r BENCH_IDLE_OTHER BENCH_IDLE_SERVER < <(awk -v a="$t1" -v b="$t2" -v s1="$self1" -v s2="$self2" \
        -v v1="$srv1" -v v2="$srv2" -v hz="$BENCH_HZ" -v secs="$BENCH_IDLE_SECS" 'BEGIN {
        srv = (v2 - v1) / hz; if (srv < 0) srv = 0
        o = b - a - (s2 - s1) / hz - srv; if (o < 0) o = 0
        printf "%.2f %.2f\n", o / secs, srv / secs }')
    echo "idle check: other processes used $BENCH_IDLE_OTHER CPU on average over ${BENCH_IDLE_SECS} s (limit $BENCH_IDLE_LIMIT)$(
        [[ -z $BENCH_SERVER_PID ]] || echo "; the benchmark server $BENCH_IDLE_SERVER CPU")"
    if awk -v o="$BENCH_IDLE_OTHER" -v l="$BENCH_IDLE_LIMIT" 'BEGIN { exit !(o > l) }'; then
        echo "idle check: BUSY; the busiest processes (CPU used on average over the ${BENCH_IDLE_SECS} s):"
        if [[ -n $report ]]; then echo "$report"; fi
        awk -v o="$BENCH_IDLE_OTHER" -v r="$report" 'BEGIN { n = split(r, l, "\n"); for (i = 1; i <= n; i++) { if (l[i] ~ /\((this script|the benchmark server, not counted)\)$/) continue; split(l[i], f, " "); s += f[1] }
            if (o - s > 0.05) printf "%8.2f CPU  by processes that ended during the sample (or the kernel)\n", o - s }'
        if [[ ${BENCH_ALLOW_BUSY:-0} == 1 ]]; then
            echo "idle check: BENCH_ALLOW_BUSY=1: running anyway; every verdict will be UNSCORED (busy)"
            echo "warning: the machine is busy; running anyway (BENCH_ALLOW_BUSY=1), nothing will be scored" >&2
            BENCH_BUSY=1
        else
            echo "error: the machine is busy (other processes used $BENCH_IDLE_OTHER CPU on average, more than $BENCH_IDLE_LIMIT): not scoring. Run on a quiet machine, or set BENCH_ALLOW_BUSY=1 to run anyway unscored." >&2
            exit 3
        fi
    fi
}

# bench_timed C OUT LOG CMD...: runs CMD once under /usr/bin/time, its stdout to OUT
# and stderr to LOG, records the run under contender C and prints a line for it. A
# failing command stops the script with its output. The run's figures are left in
# BENCH_LAST: "wall user sys rss_kib other_cpu_s server_cpu_s".
bench_timed() {
    local c=$1 out=$2 log=$3; shift 3
    local tfile rc=0 before after srv_before srv_after n
    tfile=$(mktemp -t vault-bench-time.XXXXXX)
    srv_before=$(bench_server_cpu)
    before=$(bench_total_cpu)
    /usr/bin/time -f "$BENCH_TIMEFMT" -o "$tfile" "$@" >"$out" 2>"$log" || rc=$?
    after=$(bench_total_cpu)
    srv_after=$(bench_server_cpu)
    if ((rc != 0)); then
        echo "error: $c exited with status $rc: $*" >&2
        echo "its output:" >&2
        [[ $out == /dev/null ]] || tail -n 20 "$out" >&2
        tail -n 20 "$log" >&2
        rm -f "$tfile"
        exit 1
    fi
    BENCH_LAST=$(tail -n 1 "$tfile" | awk -v b="$before" -v a="$after" -v sb="$srv_before" -v sa="$srv_after" '{
        srv = sa - sb; if (srv < 0) srv = 0
        other = a - b - $2 - $3 - srv; if (other < 0) other = 0
        printf "%s %s %s %s %.2f %.2f\n", $1, $2, $3, $4, other, srv }')
    rm -f "$tfile"
    if [[ -z ${BENCH_RUNLOG[$c]+set} ]]; then BENCH_CONTENDERS+=("$c"); BENCH_RUNLOG[$c]=; fi
    BENCH_RUNLOG[$c]+="$BENCH_LAST"$'\n'
    n=$(grep -c . <<<"${BENCH_RUNLOG[$c]}")
    awk -v c="$c" -v n="$n" -v srvname="${BENCH_SERVER_PID:+server}" '{
        printf "%-28s run %d: wall %7.2f s  CPU %7.2f s  max RSS %7.1f MiB  (other processes: %.2f CPU s", c, n, $1, $2 + $3, $4 / 1024, $5
        if (srvname != "") printf ", %s: %.2f CPU s", srvname, $6
        print ")" }' <<<"$BENCH_LAST"
}

# bench_stats C: "median_wall median_cpu peak_rss_kib runs" of contender C.
bench_stats() {
    [[ -n ${BENCH_RUNLOG[$1]:-} ]] || bench_die "no runs recorded for $1"
    awk 'NF { n++; w[n] = $1; c[n] = $2 + $3; if ($4 > r) r = $4 }
        function median(a, n,    i, j, t) {
            for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
            return (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2) }
        END { printf "%.2f %.2f %d %d\n", median(w, n), median(c, n), r, n }' <<<"${BENCH_RUNLOG[$1]}"
}

# bench_median_run C: the median run (by wall) of contender C: "wall other server".
bench_median_run() {
    sort -n -k1,1 <<<"${BENCH_RUNLOG[$1]}" | grep . | awk '{ l[NR] = $0 } END { split(l[int((NR + 1) / 2)], f, " "); print f[1], f[5], f[6] }'
}

# bench_summary_row LABEL C BYTES [NOTE]: a table row with C's medians; MB/s = BYTES / wall / 1e6.
bench_summary_header() { printf '%-28s %9s %9s %9s %13s\n' "" "wall s" "MB/s" "CPU s" "peak RSS MiB"; }
bench_summary_row() {
    local label=$1 c=$2 bytes=$3 note=${4:-}
    read -r w cpu rss _ < <(bench_stats "$c")
    awk -v l="$label" -v w="$w" -v c="$cpu" -v r="$rss" -v b="$bytes" -v note="$note" 'BEGIN {
        printf "%-28s %9.2f %9.1f %9.2f %13.1f%s\n", l, w, (w > 0 ? b / w / 1e6 : 0), c, r / 1024, (note == "" ? "" : "   " note) }'
}

# bench_ratio A B: median wall of A / median wall of B, two decimals.
bench_ratio() {
    local a b
    a=$(bench_stats "$1" | awk '{ print $1 }'); b=$(bench_stats "$2" | awk '{ print $1 }')
    awk -v a="$a" -v b="$b" 'BEGIN { if (b > 0) printf "%.2f\n", a / b; else print "inf" }'
}

# bench_goal N NAME VALUE OP LIMIT [UNIT]: a goal, printed with its verdict by
# bench_finish. VALUE is compared as printed; a VALUE that is not a number (e.g.
# "unsupported") FAILs. OP is <= or >=.
# bench_check_failed MESSAGE: a check other than a goal failed (e.g. an upload is
# missing): printed now; bench_finish exits 1 whatever the goals say.
BENCH_CHECKS_FAILED=0
bench_check_failed() { echo "check FAILED: $*"; echo "error: $*" >&2; BENCH_CHECKS_FAILED=$((BENCH_CHECKS_FAILED + 1)); }

BENCH_SEP=$'\x1f'
bench_goal() { BENCH_GOALS+=("$1$BENCH_SEP$2$BENCH_SEP$3$BENCH_SEP$4$BENCH_SEP$5$BENCH_SEP${6:-}"); }

# bench_check_runs: the median run of every contender, against BENCH_RUN_BUSY_LIMIT.
bench_check_runs() {
    local c run w other
    for c in "${BENCH_CONTENDERS[@]}"; do
        read -r w other _ < <(bench_median_run "$c")
        if awk -v w="$w" -v o="$other" -v l="$BENCH_RUN_BUSY_LIMIT" -v f="$BENCH_RUN_BUSY_FLOOR" \
            'BEGIN { exit !(o > l * w && o > f) }'; then
            run=$(bench_fmt 'busy: the median run of %s (wall %.2f s) saw other processes use %.2f CPU s (limit %.0f%% of its wall, at least %.2f CPU s)\n' \
                "$c" "$w" "$other" "$(awk -v l="$BENCH_RUN_BUSY_LIMIT" 'BEGIN { print l * 100 }')" "$BENCH_RUN_BUSY_FLOOR")
            echo "$run"
            BENCH_BUSY=1
        fi
    done
}

# bench_finish: the goals with their verdicts, by goal number, then exit 0 (all PASS), 1 (a FAIL) or
# 3 (busy: nothing scored).
bench_finish() {
    local g n name value op limit unit verdict fails=0 lines=
    echo
    echo "== goals"
    bench_check_runs
    for g in "${BENCH_GOALS[@]}"; do
        IFS=$BENCH_SEP read -r n name value op limit unit <<<"$g"
        if ((BENCH_BUSY)); then
            verdict="UNSCORED (busy)"
        elif awk -v v="$value" -v op="$op" -v l="$limit" 'BEGIN {
                if (v !~ /^-?[0-9]+(\.[0-9]+)?$/) exit 1
                exit !(op == "<=" ? v + 0 <= l + 0 : v + 0 >= l + 0) }'; then
            verdict=PASS
        else
            verdict=FAIL
            fails=$((fails + 1))
        fi
        lines+="GOAL $n $name: $value${unit:+ $unit} (target $op $limit${unit:+ $unit}): $verdict"$'\n'
    done
    # By goal number, in the order given within one.
    printf '%s' "$lines" | sort -s -n -k2,2
    if ((BENCH_CHECKS_FAILED)); then
        echo "$BENCH_CHECKS_FAILED check(s) failed (exit 1)" >&2
        exit 1
    fi
    if ((BENCH_BUSY)); then
        echo "the machine was busy: nothing is scored (exit 3); run again on a quiet machine" >&2
        exit 3
    fi
    ((fails == 0)) || exit 1
    exit 0
}
