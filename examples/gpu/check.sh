#!/usr/bin/env bash
# One-shot check of oddcube on an NVIDIA GPU machine, from a bare checkout, in at most 9 minutes:
#
#   examples/gpu/check.sh                       # on the GPU machine (needs nvidia-smi, cargo, python3)
#   examples/gpu/check.sh --dry-run --bin target/release/oddcube     # anywhere, on the CPU
#
# Stages, in order, each with its budget in seconds (the sum stays under the 540 s deadline):
#
#   stage        budget  what
#   preflight        5   nvidia-smi sees a GPU (its compute capability picks the kernels), cargo,
#                        python3 with pip (a venv under target/gpu-check-venv, reused by re-runs)
#   build          240   examples/gpu/build-cuda.sh: CUDA 13.2 wheels from PyPI (~1 GB, once)
#                        plus `cargo build --release --features cuda` of ~410 crates on 16 cores
#                        and candle's CUDA kernels (incremental: a re-run takes seconds)
#   bench-cpu       15   oddcube bench --preset cpu --device cuda (batch 16, 2 warm-up + 5 steps)
#   bench-paper     25   oddcube bench --preset paper --device cuda (the same)
#   simulate        30   oddcube simulate: 2000 galaxies, 5 % anomalies (~90 ms CPU each)
#   ingest          20   oddcube ingest --size 64 (the paper preset's grid; ~35 ms CPU each,
#                        ~1.2 GB of cubes)
#   train          130   oddcube train --preset paper --device cuda; the epochs are picked so
#                        that they fit (see "epochs" below); also fits the stored null
#   score           25   oddcube score --device cuda (calibrated with the model's stored null)
#   evaluate        45   oddcube evaluate against truth.csv, with the PCA baseline (CPU,
#                        ~0.12 CPU-s per galaxy at 64×64)
#   summary          1   the table below, time per epoch, AUROCs, flags at FDR 0.05
#                 ---
#                 536
#
# Epochs (--epochs auto, the default on the GPU): the paper bench's train and inference
# samples/s give the time of one epoch over the ingested galaxies (85 % trained, 15 % validated;
# ×1.25 for augmentation and data loading); the script runs as many epochs as fit into the train
# budget, or into what is left before the deadline once score and evaluate are reserved, if that
# is less — so a slow build shortens training instead of overrunning — at least 1, at most 15,
# and no more than `oddcube train` chooses by default (8000 galaxy presentations: 4 epochs of
# the 1700 training galaxies of 2000), since longer training teaches the model its anomalies.
#
# A GPU machine costs money, so the script fails fast: a preflight before the build, `set -e`,
# every stage under `timeout` (at most twice its budget and never past the deadline), and on the
# first failure it prints the stage, its exit status, the tail of its log and the summary table,
# then exits 1. A stage that finishes over its budget is marked so but does not fail the run.
#
# --dry-run exercises every stage but CUDA on the CPU, with the same timing and summary code: it
# takes a built CPU binary (--bin or ODDCUBE_BIN, else target/release/oddcube), skips the build,
# runs on --device cpu with a tiny survey (40 galaxies, 10 % anomalies, 32×32, `cpu` preset, 1
# epoch, benches of 1 step at batch 2). crates/oddcube/tests/gpu_check_dry_run.rs runs it.
#
# Options:
#   --dry-run            CPU only, tiny survey (see above)
#   --bin PATH           use this oddcube binary and skip the build (a CUDA one on the GPU)
#   --work DIR           working directory (default target/gpu-check, or target/gpu-check-dry);
#                        must be empty, missing, or a previous check's (it is then cleared)
#   --epochs N|auto      training epochs (default: auto on the GPU, 1 in the dry run)
#   --galaxies N         simulated galaxies (default 2000; 40 in the dry run)
#   --deadline S         wall-clock limit of the whole run in seconds, 0 for none (default 540)
#   --compute-cap CC     compute capability for build-cuda.sh (default: from nvidia-smi)
# Environment: ODDCUBE_BIN (as --bin), PYTHON (python for the CUDA wheels; default: a venv),
# CARGO_TARGET_DIR (where build-cuda.sh builds).
#
# Output: each stage's output as it runs (logs in WORK/logs/STAGE.out|.err), then a summary: one
# row per stage (budget, seconds, status), bench throughput, epochs and time per epoch, AUROC of
# every score (overall and per kind of `score`), and the galaxies flagged at FDR 0.05 with how
# many are true anomalies, ending in `check: PASS …` or `check: FAIL …`.
set -euo pipefail
export LC_ALL=C

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
started="$EPOCHREALTIME"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }

dry_run=0
bin="${ODDCUBE_BIN:-}"
work=""
epochs=""
galaxies=""
deadline=540
compute_cap=""
need_value() {
    if [ "$#" -lt 2 ] || [ -z "$2" ]; then echo "check.sh: $1 needs a value" >&2; exit 2; fi
}
while [ "$#" -gt 0 ]; do
    case "$1" in
        --dry-run) dry_run=1 ;;
        --bin) need_value "$@"; bin="$2"; shift ;;
        --bin=*) bin="${1#*=}" ;;
        --work) need_value "$@"; work="$2"; shift ;;
        --work=*) work="${1#*=}" ;;
        --epochs) need_value "$@"; epochs="$2"; shift ;;
        --epochs=*) epochs="${1#*=}" ;;
        --galaxies) need_value "$@"; galaxies="$2"; shift ;;
        --galaxies=*) galaxies="${1#*=}" ;;
        --deadline) need_value "$@"; deadline="$2"; shift ;;
        --deadline=*) deadline="${1#*=}" ;;
        --compute-cap) need_value "$@"; compute_cap="$2"; shift ;;
        --compute-cap=*) compute_cap="${1#*=}" ;;
        -h | --help) usage; exit 0 ;;
        *) echo "check.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# ---- settings of the two modes -------------------------------------------------------------
if [ "$dry_run" -eq 1 ]; then
    mode="dry run (CPU)"
    device=cpu
    preset=cpu
    size=32
    fraction=0.1
    galaxies="${galaxies:-40}"
    epochs="${epochs:-1}"
    bench_args=(--batch 2 --warmup 0 --steps 1)
    work="${work:-$repo/target/gpu-check-dry}"
else
    mode="GPU (CUDA)"
    device=cuda
    preset=paper
    size=64
    fraction=0.05
    galaxies="${galaxies:-2000}"
    epochs="${epochs:-auto}"
    bench_args=(--batch 16 --warmup 2 --steps 5)
    work="${work:-$repo/target/gpu-check}"
fi
max_epochs=15
seed=1
# Budgets in seconds (see the table at the top); the same in both modes.
declare -A budget=(
    [preflight]=5 [build]=240 [bench-cpu]=15 [bench-paper]=25 [simulate]=30 [ingest]=20
    [train]=130 [score]=25 [evaluate]=45 [summary]=1
)
stages=(preflight build bench-cpu bench-paper simulate ingest train score evaluate summary)
train_overhead=10 # seconds of the train stage outside the epochs: loading, set-up, fitting the null

case "$galaxies" in '' | *[!0-9]*) echo "check.sh: --galaxies must be a number" >&2; exit 2 ;; esac
case "$deadline" in '' | *[!0-9]*) echo "check.sh: --deadline must be whole seconds" >&2; exit 2 ;; esac
case "$epochs" in auto | [1-9] | [1-9][0-9] | [1-9][0-9][0-9]) ;; *)
    echo "check.sh: --epochs must be a positive number or auto" >&2; exit 2 ;; esac

# ---- the working directory -----------------------------------------------------------------
marker=".oddcube-gpu-check"
if [ -e "$work" ] && [ -n "$(ls -A "$work" 2>/dev/null)" ] && [ ! -e "$work/$marker" ]; then
    echo "check.sh: $work is not empty and not a previous check's working directory" >&2
    exit 2
fi
rm -rf "$work"
mkdir -p "$work/logs"
work="$(cd "$work" && pwd)"
touch "$work/$marker"
table="$work/stages.tsv"
: >"$table"

# ---- timing, stages, failure ---------------------------------------------------------------
# Seconds since the start, with millisecond precision.
elapsed() { awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
# Whole seconds left before the deadline (a large number when there is none).
left() {
    if [ "$deadline" -eq 0 ]; then echo 999999; return; fi
    awk -v a="$started" -v b="$EPOCHREALTIME" -v d="$deadline" 'BEGIN { printf "%d", d - (b - a) }'
}
record() { printf '%s\t%s\t%s\t%s\n' "$1" "${budget[$1]}" "$2" "$3" >>"$table"; }

# summary STATUS [REASON]: the table and the numbers, from the logs and artifacts in $work. With PASS it
# also checks that every artifact the numbers come from is there (exit 1 when not).
summary() {
    local name budgets=""
    for name in "${stages[@]}"; do budgets="$budgets $name=${budget[$name]}"; done
    CHECK_BUDGETS="$budgets" python3 - "$work" "$mode" "$deadline" "$(elapsed)" "$1" "${2:-}" <<'PY'
import csv, json, os, re, statistics, sys

work, mode, deadline, total, status, reason = sys.argv[1:7]
budgets = dict(item.split("=") for item in os.environ["CHECK_BUDGETS"].split())
stages = list(budgets)
missing = []

def path(*parts):
    return os.path.join(work, *parts)

def read(*parts):
    try:
        with open(path(*parts)) as f:
            return f.read()
    except OSError:
        missing.append(os.path.join(*parts))
        return None

def fmt(x, spec=".3f"):
    return "—" if x is None else format(x, spec)

rows = {}
with open(path("stages.tsv")) as f:
    for line in f:
        name, budget, seconds, state = line.rstrip("\n").split("\t", 3)
        rows[name] = (int(budget), seconds, state)

print()
print(f"== oddcube GPU check: summary — {mode} ==")
print(f"{'stage':<12} {'budget_s':>8} {'time_s':>8}  status")
total_budget = 0
for name in stages:
    budget = int(budgets[name])
    _, seconds, state = rows.get(name, (budget, "—", "not run"))
    if name == "summary":
        seconds, state = "—", "ok" if status == "PASS" else "after failure"
    total_budget += budget
    print(f"{name:<12} {budget:>8} {seconds:>8}  {state}")
limit = f"deadline {deadline}" if deadline != "0" else "no deadline"
print(f"{'total':<12} {total_budget:>8} {total:>8}  ({limit} s)")

# Bench: the throughput lines of each preset.
for preset in ("cpu", "paper"):
    out = read("logs", f"bench-{preset}.out") if f"bench-{preset}" in rows else None
    if out is None:
        continue
    head = re.search(r"batch (\d+), device ([^,\s]+)", out)
    parts = [f"batch {head.group(1)} on {head.group(2)}" if head else ""]
    for kind in ("train", "infer"):
        m = re.search(rf"^{kind}: ([\d.]+) samples/s, ([\d.]+) ms/step", out, re.M)
        if m:
            parts.append(f"{kind} {m.group(1)} samples/s ({m.group(2)} ms/step)")
    if len(parts) > 1:
        print(f"bench {preset:<6} " + "; ".join(p for p in parts if p))

# Training: epochs and time per epoch (model/history.csv), the best validation loss.
history = read("model", "history.csv") if "train" in rows else None
if history is not None:
    secs = [float(r["seconds"]) for r in csv.DictReader(history.splitlines())]
    if secs:
        later = f", later epochs {statistics.mean(secs[1:]):.2f} s" if len(secs) > 1 else ""
        print(
            f"epochs       {len(secs)} run; time per epoch: mean {statistics.mean(secs):.2f} s, "
            f"median {statistics.median(secs):.2f} s, first {secs[0]:.2f} s{later}; "
            f"{sum(secs):.1f} s in epochs of the {rows['train'][1]} s train stage"
        )
    else:
        missing.append("model/history.csv rows")
    out = read("logs", "train.out") or ""
    m = re.search(r"^best \w+ loss (\S+) at epoch (\d+) \(([\d.]+) × baseline\)", out, re.M)
    if m:
        print(f"model        best validation loss {m.group(1)} at epoch {m.group(2)} ({m.group(3)} × the mean galaxy)")

# Evaluation: AUROC of every score overall, and of `score` per kind.
evaluation = read("results", "evaluation.json") if "evaluate" in rows else None
if evaluation is not None:
    report = json.loads(evaluation)
    table = report["evaluation"]["rows"]
    overall = [(r["score"], r["auroc"]) for r in table if r["split"] == "overall"]
    if not overall:
        missing.append("results/evaluation.json overall rows")
    print("AUROC        " + "  ".join(f"{s} {fmt(a)}" for s, a in overall))
    kinds = [(r["split"], r["auroc"], r["n_positive"]) for r in table
             if r["score"] == "score" and r["split"] != "overall"]
    print("AUROC score  " + "  ".join(f"{k} {fmt(a)} (n={n})" for k, a, n in kinds))
    flags = report.get("flags")
    if flags:
        print(
            f"fdr_flag     {flags['flagged']} flagged, {flags['false_discoveries']} normal "
            f"(realized FDP {flags['false_discovery_proportion']:.3f}), recall {flags['recall']:.3f} "
            f"of {flags['anomalies']}"
        )
    loc = report.get("localization")
    if loc and loc.get("overall"):
        o = loc["overall"]
        print(f"localization {o['n']} galaxies: mean pixel AUROC {fmt(o['mean_pixel_auroc'])}, "
              f"peak inside the region {100 * o['peak_inside']:.0f} %")

# Flags at the FDR of the score stage, from catalog.csv joined with truth.csv.
catalog = read("results", "catalog.csv") if "score" in rows else None
truth = read("survey", "truth.csv") if "simulate" in rows else None
if catalog is not None and truth is not None:
    anomalous = {r["plateifu"]: r["is_anomaly"] in ("1", "true") for r in csv.DictReader(truth.splitlines())}
    cat = list(csv.DictReader(catalog.splitlines()))
    flagged = [r["plateifu"] for r in cat if r["fdr_flag"] == "true"]
    true_pos = sum(anomalous.get(p, False) for p in flagged)
    n_anom = sum(anomalous.get(r["plateifu"], False) for r in cat)
    fdr = "?"
    manifest = read("results", "manifest.json")
    if manifest is not None:
        fdr = json.loads(manifest).get("fdr", "?")
    fdp = f"{(len(flagged) - true_pos) / len(flagged):.3f}" if flagged else "—"
    print(
        f"flags        {len(flagged)} of {len(cat)} galaxies flagged at FDR {fdr}; "
        f"{true_pos} of them true anomalies (realized FDP {fdp}); {n_anom} anomalies in the survey"
    )

warnings = 0
for name in os.listdir(path("logs")):
    if name.endswith(".err"):
        with open(path("logs", name), errors="replace") as f:
            warnings += sum("WARN" in line for line in f)
if warnings:
    print(f"warnings     {warnings} WARN lines in {path('logs')}/*.err")
print(f"artifacts    {work}")
if status == "PASS" and missing:
    print("check: FAIL — missing: " + ", ".join(missing))
    sys.exit(1)
reason = f" ({reason})" if reason else ""
print(f"check: {status}{reason} — {mode}, {total} s of wall time")
PY
}

failed() { # STAGE MESSAGE [LOG...]
    local name="$1" message="$2"
    shift 2
    echo >&2
    echo "check.sh: stage '$name' FAILED: $message" >&2
    local log
    for log in "$@"; do
        if [ -s "$log" ]; then
            echo "--- last 30 lines of $log" >&2
            tail -n 30 "$log" >&2
        fi
    done
    summary FAIL "$name: $message" || true
    exit 1
}

# run_stage NAME [--ok CODE] [--as TEXT] CMD...: runs CMD in $work under timeout, its stdout and
# stderr shown and kept in logs/NAME.out and .err; records the time; fails the check on a non-zero
# exit (other than --ok CODE, e.g. ingest's 3 for skipped files). --as: what to print for CMD.
run_stage() {
    local name="$1" ok=0 shown=""
    shift
    if [ "$1" = --ok ]; then ok="$2"; shift 2; fi
    if [ "$1" = --as ]; then shown="$2"; shift 2; fi
    shown="${shown:-$*}"
    local b="${budget[$name]}" remaining limit out="$work/logs/$name.out" err="$work/logs/$name.err"
    remaining="$(left)"
    [ "$remaining" -gt 0 ] || { record "$name" "—" "no time left"; failed "$name" "the ${deadline} s deadline has passed before it started"; }
    limit=$((2 * b > b + 60 ? 2 * b : b + 60))
    [ "$limit" -le "$remaining" ] || limit="$remaining"
    echo
    echo "== $name (budget ${b} s, stopped after ${limit} s; at $(elapsed) s): $shown"
    local t0="$EPOCHREALTIME" rc
    set +e
    (
        cd "$work" || exit 1
        exec 3> >(tee "$err" >&2)
        tee_pid=$!
        timeout -k 10 "$limit" "$@" 2>&3
        status=$?
        exec 3>&-
        wait "$tee_pid" || true # the stderr tee, so that the log is complete
        exit "$status"
    ) | tee "$out"
    rc="${PIPESTATUS[0]}"
    set -e
    local dt
    dt="$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        record "$name" "$dt" "FAILED (timed out after ${limit} s)"
        failed "$name" "timed out after ${limit} s" "$out" "$err"
    elif [ "$rc" -ne 0 ] && [ "$rc" -ne "$ok" ]; then
        record "$name" "$dt" "FAILED (exit $rc)"
        failed "$name" "exit status $rc after $dt s" "$out" "$err"
    fi
    local state=ok
    [ "$rc" -eq 0 ] || state="ok (exit $rc)"
    awk -v t="$dt" -v b="$b" 'BEGIN { exit !(t > b) }' && state="$state, over budget"
    record "$name" "$dt" "$state"
}

skip_stage() { record "$1" "0.0" "skipped ($2)"; echo; echo "== $1: skipped ($2)"; }

echo "oddcube GPU check — $mode: $galaxies galaxies, preset $preset on $device, ${size}×${size}," \
    "epochs $epochs, deadline ${deadline} s; working in $work"

# ---- preflight: what the later stages need, before anything costs time ----------------------
preflight() { # DRY_RUN BIN PYTHON (run as its own bash, under timeout)
    local dry_run="$1" bin="$2" python="$3"
    command -v timeout >/dev/null || { echo "timeout (coreutils) is missing"; return 1; }
    command -v python3 >/dev/null || { echo "python3 is missing (it reads the JSON and CSV)"; return 1; }
    if [ "$dry_run" -eq 1 ]; then
        echo "dry run: no GPU used; binary $bin"
    else
        command -v nvidia-smi >/dev/null || { echo "nvidia-smi is missing: no NVIDIA driver here"; return 1; }
        nvidia-smi -L || { echo "nvidia-smi sees no GPU"; return 1; }
        if [ -z "$bin" ]; then
            command -v cargo >/dev/null || { echo "cargo is missing (https://rustup.rs; or pass --bin)"; return 1; }
            if [ -n "$python" ]; then
                "$python" -m pip --version || { echo "PYTHON=$python has no pip"; return 1; }
            elif ! python3 -c 'import venv, ensurepip' 2>/dev/null && ! python3 -m pip --version; then
                echo "python3 has neither venv+ensurepip (Debian: python3-venv) nor pip"
                return 1
            fi
        fi
    fi
    echo "cores: $(nproc)"
}

# build_cuda REPO CAP VENV [PYTHON]: build-cuda.sh with PYTHON, else with the venv VENV (created
# when it has no pip yet; a venv keeps the CUDA wheels out of the system python, PEP 668).
build_cuda() {
    local repo="$1" cap="$2" venv="$3" python="${4:-}"
    if [ -z "$python" ]; then
        python="$venv/bin/python"
        if ! "$python" -m pip --version >/dev/null 2>&1; then
            rm -rf "$venv"
            if ! python3 -m venv "$venv"; then
                echo "python3 -m venv failed: installing the wheels with python3 itself"
                rm -rf "$venv"
                python=python3
            fi
        fi
    fi
    echo "python for the CUDA wheels: $python"
    PYTHON="$python" "$repo/examples/gpu/build-cuda.sh" "$cap"
}

python="${PYTHON:-}"
venv="$repo/target/gpu-check-venv"
if [ "$dry_run" -eq 1 ]; then
    bin="${bin:-${CARGO_TARGET_DIR:-$repo/target}/release/oddcube}"
    [ -x "$bin" ] || failed preflight "no oddcube binary at $bin: run cargo build --release or pass --bin"
fi
[ -z "$bin" ] || bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"
run_stage preflight --as "checks of the tools" \
    bash -c "$(declare -f preflight); preflight \"\$@\"" preflight "$dry_run" "$bin" "$python"

# ---- build ---------------------------------------------------------------------------------
if [ "$dry_run" -eq 1 ]; then
    skip_stage build "dry run: the CPU binary"
elif [ -n "$bin" ]; then
    skip_stage build "--bin $bin"
else
    if [ -z "$compute_cap" ]; then
        compute_cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d '. ')"
    fi
    [ -n "$compute_cap" ] || failed build "cannot read the compute capability from nvidia-smi: pass --compute-cap (e.g. 90)"
    run_stage build --as "examples/gpu/build-cuda.sh $compute_cap" \
        bash -c "$(declare -f build_cuda); build_cuda \"\$@\"" build_cuda "$repo" "$compute_cap" "$venv" "$python"
    target="${CARGO_TARGET_DIR:-target}"
    case "$target" in /*) ;; *) target="$repo/$target" ;; esac
    bin="$target/release/oddcube"
fi
[ -x "$bin" ] || failed build "no binary at $bin"
if [ "$dry_run" -eq 0 ]; then
    if [ -z "$python" ]; then
        python=python3
        [ ! -x "$venv/bin/python" ] || python="$venv/bin/python"
    fi
    # The binary loads cudart, cuBLAS, cuRAND and NVRTC from the wheels at run time.
    cu="$("$python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))' 2>/dev/null || true)"
    if [ -n "$cu" ] && [ -d "$cu/lib" ]; then
        export LD_LIBRARY_PATH="$cu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        echo "LD_LIBRARY_PATH starts with $cu/lib"
    fi
fi

# ---- bench both presets --------------------------------------------------------------------
run_stage bench-cpu "$bin" bench --preset cpu --device "$device" "${bench_args[@]}"
run_stage bench-paper "$bin" bench --preset paper --device "$device" "${bench_args[@]}"

# ---- simulate and ingest -------------------------------------------------------------------
run_stage simulate "$bin" simulate --out survey --galaxies "$galaxies" --seed "$seed" \
    --anomaly-fraction "$fraction"
run_stage ingest --ok 3 "$bin" ingest survey --out dataset --size "$size"
n_ingested=$(($(wc -l <"$work/dataset/galaxies.csv") - 1))

# ---- epochs: as many as fit ----------------------------------------------------------------
bench_out="$work/logs/bench-$preset.out"
train_sps="$(awk '/^train: [0-9.]+ samples\/s/ { print $2; exit }' "$bench_out")"
infer_sps="$(awk '/^infer: [0-9.]+ samples\/s/ { print $2; exit }' "$bench_out")"
if [ -z "$train_sps" ] || [ -z "$infer_sps" ]; then
    failed "bench-$preset" "no samples/s line in $bench_out"
fi
epoch_s="$(awk -v n="$n_ingested" -v t="$train_sps" -v i="$infer_sps" \
    'BEGIN { printf "%.2f", 1.25 * (0.85 * n / t + 0.15 * n / i) }')"
reserve=$((budget[score] + budget[evaluate] + budget[summary]))
train_budget="$(left)"
train_budget=$((train_budget - reserve))
[ "$train_budget" -le "${budget[train]}" ] || train_budget="${budget[train]}"
fit="$(awk -v b="$train_budget" -v o="$train_overhead" -v e="$epoch_s" \
    'BEGIN { n = int((b - o) / e); print (n < 1 ? 1 : n) }')"
[ "$fit" -le "$max_epochs" ] || fit="$max_epochs"
# No more than `oddcube train` would choose itself: the default budget of 8000 galaxy
# presentations over the ~85 % training galaxies (docs/model.md, "Epochs and survey size").
default_epochs="$(awk -v n="$n_ingested" \
    'BEGIN { t = int(0.85 * n); e = (t > 0 ? int(8000 / t) : 30); print (e < 1 ? 1 : (e > 30 ? 30 : e)) }')"
[ "$fit" -le "$default_epochs" ] || fit="$default_epochs"
echo
echo "epochs: ~$epoch_s s per epoch over $n_ingested galaxies (bench $preset: train $train_sps," \
    "infer $infer_sps samples/s); $fit fit into $train_budget s (of which ${train_overhead} s set-up)" \
    "and the default budget of 8000 presentations ($default_epochs)"
if [ "$epochs" = auto ]; then
    epochs="$fit"
    echo "epochs: auto → $epochs"
fi

# ---- train, score, evaluate ----------------------------------------------------------------
run_stage train "$bin" train --data dataset --out model --preset "$preset" --device "$device" \
    --epochs "$epochs" --seed "$seed" --restarts 1
run_stage score "$bin" score --model model --data dataset --out results --device "$device"
run_stage evaluate "$bin" evaluate --results results --truth survey/truth.csv

summary PASS
