#!/usr/bin/env python3
"""Writes docs/benchmarks.md from what `just bench` printed.

Usage: bench-report.py <bench log> <report.md>

The log is the benchmarks' output with the recipe's own marker lines:

    FIGURE <key> <value> <unit> <target> <description...>   printed by a benchmark
    RUN started <ISO time> | RUN seconds <n>                 the whole run, build included
    BUILD seconds <n>                                        building the benchmarks first
    COMMIT <short hash> <files changed in the working tree>  what was built
    LOAD start|benchmarks|end <1 min> <5 min> <15 min>       /proc/loadavg: before the build,
                                                             as the benchmarks begin, at the end
    BENCH-START <package>/<bench>
    BENCH-END <package>/<bench> <exit code> <seconds> <1-min load at the end>

<target> is `-` (none), or `>=N`, `<=N`, `=N` in the figure's unit. The machine is described
from this machine, so run the script where the benchmarks ran. Standard library only.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field

# The figures the issues asked the report for, first in the table and in this order; a missing
# one is listed as not measured rather than left out.
HEADLINE = [
    ("fold.events_per_s", "Fold on one core"),
    ("engine.replay_ratio", "Engine replay / raw ordered read"),
    ("latency.new_member.p50", "Webhook to Kisi, member new to Kisi, p50"),
    ("latency.new_member.p99", "Webhook to Kisi, member new to Kisi, p99"),
    ("latency.new_member.max", "Webhook to Kisi, member new to Kisi, max"),
    ("latency.known_member.p50", "Webhook to Kisi, member Kisi holds, p50"),
    ("latency.known_member.p99", "Webhook to Kisi, member Kisi holds, p99"),
    ("latency.known_member.max", "Webhook to Kisi, member Kisi holds, max"),
    ("writer.backlog_calls", "Kisi calls for a backlog, against the fewest"),
    ("writer.live_calls", "Kisi calls for live changes, against the fewest"),
    ("writer.limiter_utilisation", "Writer limiter utilisation"),
    ("writer.limiter_429", "429 answers at the writer's rate"),
    ("engine.resident_idle", "Resident memory per idle member"),
    ("engine.resident_active", "Resident memory per active member"),
]

REPRODUCE_BENCHES = [
    ("doorsync-log-jetstream", "throughput", "JetStream log against raw async-nats", "BENCH_EVENTS, BENCH_ROUNDS"),
    ("doorsync-log-embedded", "throughput", "the embedded log (redb)", "BENCH_DIR"),
    ("doorsync-access", "fold", "the access fold and derivation", ""),
    ("doorsync-engine", "engine", "engine replay, end to end, memory per member",
     "BENCH_MEMBERS, BENCH_EVENTS_PER_MEMBER, BENCH_PARTITIONS"),
    ("doorsync-writer", "writer", "Kisi calls against the fewest, limiter utilisation", "BENCH_LIMITER_MEMBERS"),
    ("doorsync-integration-tests", "latency", "webhook to Kisi latency", "BENCH_BOOKINGS"),
]


@dataclass
class Figure:
    key: str
    value: str
    unit: str
    target: str
    description: str


@dataclass
class BenchRun:
    name: str
    exit_code: int | None = None
    seconds: int | None = None
    load_after: str | None = None


@dataclass
class Run:
    figures: dict[str, Figure] = field(default_factory=dict)
    benches: dict[str, BenchRun] = field(default_factory=dict)
    started: str | None = None
    seconds: int | None = None
    build_seconds: int | None = None
    commit: str | None = None
    changed_files: int = 0
    load: dict[str, str] = field(default_factory=dict)


def parse(lines: list[str]) -> Run:
    run = Run()
    for line in lines:
        words = line.rstrip("\n").split()
        if not words:
            continue
        marker = words[0]
        if marker == "FIGURE" and len(words) >= 6:
            figure = Figure(words[1], words[2], words[3], words[4], " ".join(words[5:]))
            # A figure printed twice (a bench run twice into one log) keeps its last value.
            run.figures[figure.key] = figure
        elif marker == "RUN" and len(words) >= 3:
            if words[1] == "started":
                run.started = words[2]
            elif words[1] == "seconds" and words[2].isdigit():
                run.seconds = int(words[2])
        elif marker == "COMMIT" and len(words) >= 3:
            run.commit = words[1]
            run.changed_files = int(words[2]) if words[2].isdigit() else 0
        elif marker == "BUILD" and len(words) >= 3 and words[2].isdigit():
            run.build_seconds = int(words[2])
        elif marker == "LOAD" and len(words) >= 5:
            run.load[words[1]] = " ".join(words[2:5])
        elif marker == "BENCH-START" and len(words) >= 2:
            run.benches[words[1]] = BenchRun(words[1])
        elif marker == "BENCH-END" and len(words) >= 4:
            bench = run.benches.setdefault(words[1], BenchRun(words[1]))
            bench.exit_code = int(words[2]) if words[2].lstrip("-").isdigit() else None
            bench.seconds = int(words[3]) if words[3].isdigit() else None
            bench.load_after = words[4] if len(words) >= 5 else None
    return run


def number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return None if value != value else value  # NaN: not measured


def readable(text: str) -> str:
    """1234567 -> 1,234,567; 0.68 stays; NaN -> not measured."""
    value = number(text)
    if value is None:
        return "not measured"
    if re.fullmatch(r"-?\d+", text):
        return f"{int(text):,}"
    whole, _, fraction = text.partition(".")
    return f"{int(whole):,}.{fraction}" if re.fullmatch(r"-?\d+", whole) else text


UNITS = {"events/s": "events/s", "messages/s": "messages/s", "calls/s": "calls/s", "requests/s": "requests/s",
         "bytes": "bytes", "ms": "ms", "s": "s", "%": "%", "calls": "calls", "responses": "", "ratio": ""}


def with_unit(value: str, unit: str) -> str:
    shown = UNITS.get(unit, unit)
    if value == "not measured":
        return value
    return f"{value} {shown}".strip() if shown != "%" else f"{value} %"


def target_text(figure: Figure) -> str:
    match = re.fullmatch(r"(>=|<=|=)(.+)", figure.target)
    if not match:
        return "—"
    sign = {">=": "≥", "<=": "≤", "=": "="}[match.group(1)]
    return f"{sign} {with_unit(readable(match.group(2)), figure.unit)}"


def verdict(figure: Figure) -> str:
    match = re.fullmatch(r"(>=|<=|=)(.+)", figure.target)
    value, bound = number(figure.value), number(match.group(2)) if match else None
    if not match or value is None or bound is None:
        return ""
    met = {">=": value >= bound, "<=": value <= bound, "=": value == bound}[match.group(1)]
    return "met" if met else "**not met**"


def escape(text: str) -> str:
    return text.replace("|", "\\|")


def table(run: Run) -> list[str]:
    rows = ["| Measure | Result | Target | |", "|---|---|---|---|"]
    shown = set()
    for key, name in HEADLINE:
        figure = run.figures.get(key)
        shown.add(key)
        if figure is None:
            rows.append(f"| **{name}** | not measured in this run | | |")
            continue
        result = with_unit(readable(figure.value), figure.unit)
        rows.append(f"| **{escape(figure.description)}** | **{result}** | {target_text(figure)} | {verdict(figure)} |")
    for key, figure in run.figures.items():
        if key in shown:
            continue
        result = with_unit(readable(figure.value), figure.unit)
        rows.append(f"| {escape(figure.description)} | {result} | {target_text(figure)} | {verdict(figure)} |")
    return rows


def command(*arguments: str) -> str | None:
    try:
        done = subprocess.run(arguments, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def machine(run: Run) -> list[str]:
    cpu = command("lscpu") or ""
    fields = dict(
        (name.strip(), value.strip()) for name, _, value in (line.partition(":") for line in cpu.splitlines())
    )
    model = fields.get("Model name", "unknown CPU")
    cpus = fields.get("CPU(s)") or str(os.cpu_count() or "?")
    threads = fields.get("Thread(s) per core")
    memory = "unknown"
    try:
        with open("/proc/meminfo", encoding="utf-8") as meminfo:
            for line in meminfo:
                if line.startswith("MemTotal:"):
                    memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    system = "unknown"
    try:
        with open("/etc/os-release", encoding="utf-8") as release:
            for line in release:
                if line.startswith("PRETTY_NAME="):
                    system = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    kernel = command("uname", "-r") or "?"
    if run.commit:
        commit = run.commit
        tree = f" with {run.changed_files} files changed in the working tree" if run.changed_files else ""
    else:
        commit = command("git", "rev-parse", "--short", "HEAD") or "unknown"
        dirty = command("git", "status", "--porcelain", "--untracked-files=no")
        tree = (" with uncommitted changes" if dirty else "") + " (read when the report was written)"
    nats = command(os.path.join(".tools", "bin", "nats-server"), "--version") or command("nats-server", "--version")
    lines = [
        f"- **CPU:** {model}, {cpus} logical CPUs"
        + (f", {threads} thread{'' if threads == '1' else 's'} per core" if threads else ""),
        f"- **Memory:** {memory}",
        f"- **OS:** {system}, Linux {kernel}",
        f"- **Rust:** {command('rustc', '--version') or 'unknown'}; benches built with the `bench` profile "
        "(optimised, line debug info)",
        f"- **nats-server:** {nats or 'not found'}",
        f"- **Commit:** `{commit}`{tree}",
        f"- **Run started:** {run.started or 'unknown'}{took(run)}",
    ]
    if run.load:
        moments = [("start", "at the start (before building)"), ("benchmarks", "as the benchmarks began"),
                   ("end", "at the end")]
        loads = "; ".join(f"{run.load[moment]} {when}" for moment, when in moments if moment in run.load)
        lines.append(
            f"- **Load average (1, 5, 15 min):** {loads}; after each benchmark below. The machine is shared: "
            "a 1-minute load near or above the CPU count means other work competed with the benchmarks, "
            "which lowers throughputs and raises latencies."
        )
    return lines


def minutes(seconds: int) -> str:
    return f"{seconds // 60} min {seconds % 60} s"


def took(run: Run) -> str:
    if run.seconds is None:
        return ""
    if run.build_seconds is None:
        return f"; took {minutes(run.seconds)} including the build"
    return (
        f"; took {minutes(run.seconds)}: {minutes(run.build_seconds)} building, then "
        f"{minutes(run.seconds - run.build_seconds)} running the benchmarks"
    )


def bench_runs(run: Run) -> list[str]:
    rows = ["| Benchmark | Took | Exit | 1-min load after |", "|---|---|---|---|"]
    for bench in run.benches.values():
        took = f"{bench.seconds} s" if bench.seconds is not None else "did not finish"
        code = "—" if bench.exit_code is None else ("ok" if bench.exit_code == 0 else f"**failed ({bench.exit_code})**")
        rows.append(f"| `{bench.name}` | {took} | {code} | {bench.load_after or '—'} |")
    return rows


def report(run: Run, log_path: str) -> str:
    failed = [bench.name for bench in run.benches.values() if bench.exit_code not in (0,)]
    parts = [
        "# Benchmarks",
        "",
        "Written by `just bench` (`scripts/bench-report.py` from the figures the benchmarks print); "
        "do not edit by hand, run it again. Benchmarks print figures and assert nothing about time.",
        "",
        "## Figures",
        "",
        "The figures the issues asked for come first, in bold; the rest support them. A target is "
        "the one an issue set (issue 3: fold, replay ratio, memory; issue 4: Kisi calls, limiter; "
        "issue 6: a booking in Kisi within 2 s, where the design (`../shared/design.md`, \"Seconds, not "
        "minutes\") promises about a second; issue 2: JetStream log against raw async-nats).",
        "",
        *table(run),
        "",
    ]
    if failed:
        names = ", ".join(f"`{name}`" for name in failed)
        parts += [f"**Incomplete:** {names} failed or did not finish; its figures may be missing. See the log.", ""]
    parts += [
        "How the figures are taken:",
        "",
        "- **Fold** (`crates/access/benches/fold.rs`): a deterministic stream of bookings, passes, "
        "contracts and member changes, folded from empty states in one thread; median of 5 rounds.",
        "- **Engine** (`crates/engine/benches/engine.rs`): a nats-server on loopback; a fresh engine "
        "replays the whole event stream until every partition reports it caught up, against an "
        "async-nats ordered read of the same stream in the same run. Memory is resident set growth: "
        "active with every member's actor alive, idle in a child process that starts from the "
        "checkpoint with every member passivated.",
        "- **Webhook to Kisi** (`tests/benches/latency.rs`): ingest, engine and writer in one "
        "process on the embedded log, as `doorsync run`, against the Nexudus and Kisi simulators on "
        "loopback on the system clock. From just before a booking is created in the Nexudus simulator "
        "(which sends the signed webhook) to the `created_at` the Kisi simulator stamps on the role "
        "assignment. Kisi's limit is real (5 requests/s, the writer at its default 4/s); bookings are "
        "spaced so that one booking's calls are done before the next one's begin. A member new to Kisi "
        "costs three calls (find by email, create user, create assignment), so at least 500 ms of "
        "each such latency is the writer pacing itself. Nexudus's request limits are lifted, as in "
        "the end-to-end tests. Percentiles are nearest-rank.",
        "- **Kisi calls and limiter** (`crates/writer/benches/writer.rs`): the writer against the "
        "Kisi simulator on the embedded log. Call counts are taken with rate limits lifted; the "
        "limiter's utilisation is measured in real time at the writer's default 4 requests/s "
        "against the simulator's 5/s, from the first call to the last.",
        "- **Logs** (`crates/log-jetstream/benches`, `crates/log-embedded/benches`): JetStream "
        "against raw async-nats in alternating rounds, median round; the embedded log on this "
        "machine's disk, where fsync latency dominates single appends.",
        "",
        "## Machine",
        "",
        *machine(run),
        "",
        *bench_runs(run),
        "",
        "## Reproduce",
        "",
        "```sh",
        "just bench      # installs nats-server into .tools/ if missing, builds, runs every benchmark, writes this file",
        "```",
        "",
        f"The raw output is kept in `{log_path}`; `python3 scripts/bench-report.py {log_path} docs/benchmarks.md` "
        "writes this file from it again. One benchmark alone, and the settings that size it:",
        "",
        "| Command | Measures | Settings (environment) |",
        "|---|---|---|",
    ]
    for package, bench, what, settings in REPRODUCE_BENCHES:
        parts.append(f"| `cargo bench -p {package} --bench {bench}` | {what} | {settings or '—'} |")
    parts += [
        "",
        "Defaults are the sizes the issues used: 100,000 members and 1,000,001 events for the engine, "
        "200 bookings per round for the latency, 200 members for the writer's call counts. Each "
        "benchmark prints its figures as text and as `FIGURE <key> <value> <unit> <target> "
        "<description>` lines, which is all this report reads.",
        "",
    ]
    return "\n".join(parts)


def main() -> int:
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    log_path, out_path = sys.argv[1], sys.argv[2]
    with open(log_path, encoding="utf-8", errors="replace") as log:
        run = parse(log.readlines())
    if not run.figures:
        print(f"{log_path} holds no FIGURE lines: no benchmark finished", file=sys.stderr)
        return 1
    os.makedirs(os.path.dirname(out_path) or ".", exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as out:
        out.write(report(run, log_path))
    print(f"wrote {out_path}: {len(run.figures)} figures from {len(run.benches)} benchmarks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
