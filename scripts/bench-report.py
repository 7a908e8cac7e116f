#!/usr/bin/env python3
"""Writes docs/benchmarks.md from what `just bench` printed.

Usage: bench-report.py <bench log> <report.md>
       bench-report.py --add <bench log> <report.md>

The first form writes the report from the log alone. The second adds a log of some benchmarks
(one run alone, say) to the report already written: each benchmark in the log replaces that
benchmark's figures, the others' are kept. It reads them from the end of the report, where every
report keeps the figures and markers it was written from in an HTML comment.

The log is the benchmarks' output with the recipe's own marker lines:

    FIGURE <key> <value> <unit> <target> <description...>   printed by a benchmark
    RUN started <ISO time> | RUN seconds <n>                 the whole run, build included
    BUILD seconds <n>                                        building the benchmarks first
    COMMIT <short hash> <files changed in the working tree>  what was built
    LOAD start|benchmarks|end <1 min> <5 min> <15 min>       /proc/loadavg: before the build,
                                                             as the benchmarks begin, at the end
    BENCH-START <package>/<bench>
    BENCH-END <package>/<bench> <exit code> <seconds> <1-min load at the end>

<target> is `-` (none), or `>=N`, `<=N`, `=N` in the figure's unit. A FIGURE line belongs to the
benchmark whose BENCH-START it follows. A log may hold several runs, each from its `RUN started`
line: a benchmark run again replaces its earlier figures. The machine is described from this
machine, so run the script where the benchmarks ran. Standard library only.
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
    # Issue 18: where people wait.
    ("latency.new_member.p50", "Webhook to Kisi, member new to Kisi, p50"),
    ("latency.new_member.p99", "Webhook to Kisi, member new to Kisi, p99"),
    ("latency.known_member.p50", "Webhook to Kisi, member Kisi holds, p50"),
    ("latency.known_member.p99", "Webhook to Kisi, member Kisi holds, p99"),
    ("latency.update.p99", "Webhook to Kisi, booking extended, p99"),
    ("latency.kisi_429", "Kisi 429 answers, latency rounds"),
    ("latency.nexudus_409", "Nexudus 409 answers, latency rounds"),
    ("latency.new_member.nexudus_requests", "Nexudus requests per change, member new to Kisi"),
    ("latency.known_member.nexudus_requests", "Nexudus requests per change, member Kisi holds"),
    ("latency.update.nexudus_requests", "Nexudus requests per change, booking extended"),
    ("latency.split_minus_one_process.new_member.p50", "Split minus one process, member new to Kisi, p50"),
    ("latency.split_minus_one_process.known_member.p50", "Split minus one process, member Kisi holds, p50"),
    ("latency.split_minus_one_process.update.p50", "Split minus one process, booking extended, p50"),
    ("first_sync.large.calls_ratio", "First sync, 5,000 members: Kisi calls against the fewest"),
    ("first_sync.large.kisi_429", "First sync, 5,000 members: Kisi 429 answers"),
    ("first_sync.large.wall_seconds_at_4_per_s", "First sync, 5,000 members: wall time at 4/s"),
    ("first_sync.small.calls_ratio", "First sync, 120 members: Kisi calls against the fewest"),
    ("first_sync.small.kisi_429", "First sync, 120 members: Kisi 429 answers"),
    ("first_sync.live_during_first_sync.p99", "Live booking during a 5,000-member first sync, p99"),
    ("first_sync.live_during_reconcile.p99", "Live booking during a reconcile, p99"),
    ("engine.replay_ratio", "Engine replay / raw ordered read"),
    ("engine.end_to_end_speedup", "Engine start to last command, speed-up"),
    ("burst.webhook_answer.p99", "Webhook burst: answer time, p99"),
    ("burst.change_to_kisi.p99", "Webhook burst: change to Kisi, p99"),
    ("burst.commits_per_append", "Webhook burst: embedded log commits per append"),
    ("writer.limiter_429", "429 answers at the writer's rate"),
    ("writer.limiter_429_at_kisi_limit", "429 answers at Kisi's own 5/s"),
    ("writer.limiter_utilisation", "Writer limiter utilisation"),
    # Earlier issues.
    ("fold.events_per_s", "Fold on one core"),
    ("latency.cancellation.p99", "Webhook to Kisi, booking cancelled, p99"),
    ("latency.hard_delete.p99", "Webhook to Kisi, booking hard-deleted, p99"),
    ("writer.backlog_calls", "Kisi calls for a backlog, against the fewest"),
    ("engine.resident_idle", "Resident memory per idle member"),
]

REPRODUCE_BENCHES = [
    ("doorsync-log-jetstream", "throughput", "JetStream log against raw async-nats", "BENCH_EVENTS, BENCH_ROUNDS"),
    ("doorsync-log-embedded", "throughput", "the embedded log (redb)", "BENCH_DIR"),
    ("doorsync-access", "fold", "the access fold and derivation", ""),
    ("doorsync-engine", "engine", "engine replay, end to end, memory per member",
     "BENCH_MEMBERS, BENCH_EVENTS_PER_MEMBER, BENCH_PARTITIONS"),
    ("doorsync-writer", "writer", "Kisi calls against the fewest, limiter utilisation", "BENCH_LIMITER_MEMBERS"),
    ("doorsync-integration-tests", "latency", "webhook to Kisi latency, one process and split", "BENCH_BOOKINGS"),
    ("doorsync-integration-tests", "first_sync", "first sync and reconcile by the page, live bookings meanwhile",
     "BENCH_FIRST_SYNC_PARTS, BENCH_LIVE_SECONDS (see the bench's doc comment)"),
    ("doorsync-integration-tests", "burst", "2,000 webhooks in 10 s on the embedded log", "see the bench's doc comment"),
]


@dataclass
class Figure:
    key: str
    value: str
    unit: str
    target: str
    description: str
    # The benchmark that printed it, and the index of its session in `Run.sessions`.
    bench: str | None = None
    session: int = 0


@dataclass
class BenchRun:
    name: str
    exit_code: int | None = None
    seconds: int | None = None
    load_after: str | None = None
    session: int = 0


@dataclass
class Session:
    """One run of the recipe, or of some benchmarks alone: from a `RUN started` line to the next."""

    started: str | None = None
    seconds: int | None = None
    build_seconds: int | None = None
    commit: str | None = None
    changed_files: int = 0
    load: dict[str, str] = field(default_factory=dict)


@dataclass
class Run:
    figures: dict[str, Figure] = field(default_factory=dict)
    benches: dict[str, BenchRun] = field(default_factory=dict)
    sessions: list[Session] = field(default_factory=list)

    def current(self) -> Session:
        # Lines before any `RUN started` (a log of one benchmark's output) still form a session.
        if not self.sessions:
            self.sessions.append(Session())
        return self.sessions[-1]

    def live_sessions(self) -> list[int]:
        """The sessions some kept benchmark or figure comes from, in order."""
        used = {bench.session for bench in self.benches.values()} | {f.session for f in self.figures.values()}
        return sorted(used)


def parse(lines: list[str]) -> Run:
    run = Run()
    bench_now: str | None = None
    for line in lines:
        words = line.rstrip("\n").split()
        if not words:
            continue
        marker = words[0]
        if marker == "FIGURE" and len(words) >= 6:
            run.current()
            figure = Figure(words[1], words[2], words[3], words[4], " ".join(words[5:]), bench_now,
                            len(run.sessions) - 1)
            # A figure printed twice (a bench run twice into one log) keeps its last value.
            run.figures[figure.key] = figure
        elif marker == "RUN" and len(words) >= 3:
            if words[1] == "started":
                run.sessions.append(Session(started=None if words[2] == "unknown" else words[2]))
            elif words[1] == "seconds" and words[2].isdigit():
                run.current().seconds = int(words[2])
        elif marker == "COMMIT" and len(words) >= 3:
            session = run.current()
            session.commit = words[1]
            session.changed_files = int(words[2]) if words[2].isdigit() else 0
        elif marker == "BUILD" and len(words) >= 3 and words[2].isdigit():
            run.current().build_seconds = int(words[2])
        elif marker == "LOAD" and len(words) >= 5:
            run.current().load[words[1]] = " ".join(words[2:5])
        elif marker == "BENCH-START" and len(words) >= 2:
            bench_now = words[1]
            run.current()
            # A benchmark run again replaces what it printed before, figures it no longer prints
            # included; it keeps its place in the table of runs.
            run.figures = {key: f for key, f in run.figures.items() if f.bench != bench_now}
            run.benches[bench_now] = BenchRun(bench_now, session=len(run.sessions) - 1)
        elif marker == "BENCH-END" and len(words) >= 4:
            run.current()
            bench = run.benches.setdefault(words[1], BenchRun(words[1], session=len(run.sessions) - 1))
            bench.exit_code = int(words[2]) if words[2].lstrip("-").isdigit() else None
            bench.seconds = int(words[3]) if words[3].isdigit() else None
            bench.load_after = words[4] if len(words) >= 5 else None
            bench_now = None
    return run


def as_log(run: Run) -> list[str]:
    """What `run` keeps, as log lines that parse back to it: each live session's markers, then its
    benchmarks with their figures."""
    lines = []
    for index in run.live_sessions():
        session = run.sessions[index]
        lines.append(f"RUN started {session.started or 'unknown'}")
        if session.commit:
            lines.append(f"COMMIT {session.commit} {session.changed_files}")
        if "start" in session.load:
            lines.append(f"LOAD start {session.load['start']}")
        if session.build_seconds is not None:
            lines.append(f"BUILD seconds {session.build_seconds}")
        if "benchmarks" in session.load:
            lines.append(f"LOAD benchmarks {session.load['benchmarks']}")

        def figure_lines(bench: str | None) -> list[str]:
            return [
                f"FIGURE {f.key} {f.value} {f.unit} {f.target} {f.description}"
                for f in run.figures.values()
                if f.session == index and f.bench == bench
            ]

        lines += figure_lines(None)
        for bench in run.benches.values():
            if bench.session != index:
                continue
            lines.append(f"BENCH-START {bench.name}")
            lines += figure_lines(bench.name)
            code = "?" if bench.exit_code is None else str(bench.exit_code)
            seconds = "?" if bench.seconds is None else str(bench.seconds)
            lines.append(f"BENCH-END {bench.name} {code} {seconds} {bench.load_after or '?'}".rstrip())
        if "end" in session.load:
            lines.append(f"LOAD end {session.load['end']}")
        if session.seconds is not None:
            lines.append(f"RUN seconds {session.seconds}")
    return lines


# Where a report keeps what it was written from: an HTML comment at its end, one log line a line.
EMBEDDED_START = "<!-- bench-report.py: the figures and markers this report was written from (read by --add)"
EMBEDDED_END = "-->"


def embedded_log(report_text: str) -> list[str] | None:
    lines = report_text.splitlines()
    if EMBEDDED_START not in lines:
        return None
    start = lines.index(EMBEDDED_START) + 1
    end = lines.index(EMBEDDED_END, start) if EMBEDDED_END in lines[start:] else len(lines)
    return lines[start:end]


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


# The figures as the open issue found them, shown beside today's: FIGURE lines (the earlier
# report's, and the issue's own measurements where no benchmark had one), next to this script.
BEFORE_LOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "benchmarks-before.log")


def before_figures() -> dict[str, Figure]:
    try:
        with open(BEFORE_LOG, encoding="utf-8") as log:
            return parse([line for line in log if not line.startswith("#")]).figures
    except FileNotFoundError:
        return {}


def before_text(before: dict[str, Figure], key: str) -> str:
    figure = before.get(key)
    return with_unit(readable(figure.value), figure.unit) if figure else "—"


def table(run: Run) -> list[str]:
    before = before_figures()
    rows = ["| Measure | Result | Target | | Before |", "|---|---|---|---|---|"]
    shown = set()
    for key, name in HEADLINE:
        figure = run.figures.get(key)
        shown.add(key)
        if figure is None:
            rows.append(f"| **{name}** | not measured in this run | | | {before_text(before, key)} |")
            continue
        result = with_unit(readable(figure.value), figure.unit)
        rows.append(
            f"| **{escape(figure.description)}** | **{result}** | {target_text(figure)} | {verdict(figure)} "
            f"| {before_text(before, key)} |"
        )
    for key, figure in run.figures.items():
        if key in shown:
            continue
        result = with_unit(readable(figure.value), figure.unit)
        rows.append(
            f"| {escape(figure.description)} | {result} | {target_text(figure)} | {verdict(figure)} "
            f"| {before_text(before, key)} |"
        )
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
    nats = command(os.path.join(".tools", "bin", "nats-server"), "--version") or command("nats-server", "--version")
    lines = [
        f"- **CPU:** {model}, {cpus} logical CPUs"
        + (f", {threads} thread{'' if threads == '1' else 's'} per core" if threads else ""),
        f"- **Memory:** {memory}",
        f"- **OS:** {system}, Linux {kernel}",
        f"- **Rust:** {command('rustc', '--version') or 'unknown'}; benches built with the `bench` profile "
        "(optimised, line debug info)",
        f"- **nats-server:** {nats or 'not found'}",
    ]
    live = run.live_sessions()
    if len(live) <= 1:
        lines += session_lines(run.sessions[live[0]] if live else Session(), "- ")
    else:
        lines.append(
            f"- **Runs:** the figures come from {len(live)} runs on this machine; a benchmark's figures "
            "are from its latest run (the Run column below)."
        )
        for number, index in enumerate(live, 1):
            lines.append(f"  - **Run {number}**")
            lines += session_lines(run.sessions[index], "    - ")
    lines.append(
        "- The machine is shared: a 1-minute load near or above the CPU count means other work competed "
        "with the benchmarks, which lowers throughputs and raises latencies."
    )
    return lines


def session_lines(session: Session, bullet: str) -> list[str]:
    if session.commit:
        commit = session.commit
        tree = f" with {session.changed_files} files changed in the working tree" if session.changed_files else ""
    else:
        commit = command("git", "rev-parse", "--short", "HEAD") or "unknown"
        dirty = command("git", "status", "--porcelain", "--untracked-files=no")
        tree = (" with uncommitted changes" if dirty else "") + " (read when the report was written)"
    lines = [
        f"{bullet}**Commit:** `{commit}`{tree}",
        f"{bullet}**Run started:** {session.started or 'unknown'}{took(session)}",
    ]
    if session.load:
        moments = [("start", "at the start (before building)"), ("benchmarks", "as the benchmarks began"),
                   ("end", "at the end")]
        loads = "; ".join(f"{session.load[moment]} {when}" for moment, when in moments if moment in session.load)
        lines.append(f"{bullet}**Load average (1, 5, 15 min):** {loads}; after each benchmark below.")
    return lines


def minutes(seconds: int) -> str:
    return f"{seconds // 60} min {seconds % 60} s"


def took(session: Session) -> str:
    if session.seconds is None:
        return ""
    if session.build_seconds is None:
        return f"; took {minutes(session.seconds)} including the build"
    return (
        f"; took {minutes(session.seconds)}: {minutes(session.build_seconds)} building, then "
        f"{minutes(session.seconds - session.build_seconds)} running the benchmarks"
    )


def bench_runs(run: Run) -> list[str]:
    live = run.live_sessions()
    several = len(live) > 1
    rows = ["| Benchmark | Took | Exit | 1-min load after |" + (" Run |" if several else ""),
            "|---|---|---|---|" + ("---|" if several else "")]
    for bench in run.benches.values():
        took = f"{bench.seconds} s" if bench.seconds is not None else "did not finish"
        code = "—" if bench.exit_code is None else ("ok" if bench.exit_code == 0 else f"**failed ({bench.exit_code})**")
        session = f" {live.index(bench.session) + 1} |" if several else ""
        rows.append(f"| `{bench.name}` | {took} | {code} | {bench.load_after or '—'} |{session}")
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
        "the one an issue set (issue 18: a new member's door within 250 ms at p50 and 1 s at p99, a known "
        "member's within 100 ms, no 429, first sync within 1.05x (5,000 members) and 1.1x (120) of the "
        "fewest Kisi calls, a live booking within 2 s at p99 during a first sync or a reconcile, replay at "
        "0.8x a raw read, engine start to last command 1.5x faster, the split deployment within 100 ms of "
        "one process; issue 3: fold, memory; issue 4: Kisi calls; the deleted-records issue: a removal "
        "within 1 s; issue 2: JetStream log against raw async-nats). Before is the figure as issue 18 "
        "found it (`docs/benchmarks-before.log`), where a benchmark measured it then.",
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
        "- **Webhook to Kisi** (`tests/benches/latency.rs`): `doorsync_node::start` from a configuration "
        "as the binary reads it, run both ways: one process on the embedded log (`doorsync run`), and "
        "split (ingest, engine and writer started apart, each with its own connection to a nats-server "
        "on loopback); against the Nexudus and Kisi simulators at their real limits (Nexudus's published "
        "request limits in the client and the simulator, the poller on its default schedule; Kisi 5/s, "
        "the writer at its default 4 in any rolling second). From just before the change in the Nexudus "
        "simulator (which sends the signed webhook) to the `created_at` the Kisi simulator stamps, or, for "
        "an extension, to Kisi showing the new window; removals are looked for every 2 ms. Nexudus "
        "requests per change are the simulator's count, the poller's included. Percentiles are nearest-rank.",
        "- **First sync** (`tests/benches/first_sync.rs`): a space reaching doorsync by its first poll; "
        "Kisi calls counted by the simulator against the fewest (user-list pages, group-assignment pages, "
        "users created, memberships). The 5,000-member count runs with the rates raised in the simulator "
        "and the writer, so its wall time at 4/s is computed (calls / 4), as its description says; 120 "
        "members run at the real rate. Live bookings are timed from the Nexudus change to Kisi's "
        "`created_at` while a first sync or a reconcile is under way.",
        "- **Burst** (`tests/benches/burst.rs`): 2,000 signed webhooks posted in 10 s to `doorsync run`, "
        "Nexudus's limits lifted for this bench alone (at 10 requests/s the reads alone take 200 s); "
        "answer times, change to Kisi, and the embedded log's durable commits per append.",
        "- **Kisi calls and limiter** (`crates/writer/benches/writer.rs`): the writer against the "
        "Kisi simulator on the embedded log. Call counts are taken with rate limits lifted; the "
        "limiter's utilisation is measured in real time at the writer's default 4 requests in any "
        "rolling second against the simulator's 5/s, and once at 5, from the first call to the last.",
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
        *raw_output(run, log_path),
        "One benchmark alone, and the settings that size it:",
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
        EMBEDDED_START,
        # An HTML comment cannot hold "--"; no figure's description has one.
        *(line.replace("--", "- -") for line in as_log(run)),
        EMBEDDED_END,
        "",
    ]
    return "\n".join(parts)


def raw_output(run: Run, log_path: str) -> list[str]:
    added = (
        "To add one benchmark run alone, run it as the recipe does (its output between `BENCH-START` and "
        "`BENCH-END` lines) into a log and `python3 scripts/bench-report.py --add <log> docs/benchmarks.md`: "
        "its figures replace that benchmark's and the others are kept, from the comment at the end of this file."
    )
    if len(run.live_sessions()) > 1:
        return [f"The figures come from several runs; the last added was `{log_path}`. {added}", ""]
    return [
        f"The raw output is kept in `{log_path}`; `python3 scripts/bench-report.py {log_path} docs/benchmarks.md` "
        f"writes this file from it again. {added}",
        "",
    ]


def main() -> int:
    arguments = sys.argv[1:]
    adding = arguments[:1] == ["--add"]
    if adding:
        arguments = arguments[1:]
    if len(arguments) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    log_path, out_path = arguments
    lines = []
    if adding:
        try:
            with open(out_path, encoding="utf-8") as previous:
                kept = embedded_log(previous.read())
        except FileNotFoundError:
            kept = None
        if kept is None:
            print(f"{out_path} keeps no figures to add to (no comment from bench-report.py at its end); "
                  "write it from a whole run first", file=sys.stderr)
            return 1
        lines += kept
    with open(log_path, encoding="utf-8", errors="replace") as log:
        lines += log.readlines()
    run = parse(lines)
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
