"""The benchmark suite in one command: installs bench/requirements.txt into this interpreter, runs every
benchmark (each beside its reference, in this one run), and writes BENCHMARKS.md with the machine's
facts, each figure with its reference and ratio, and the command that runs each benchmark alone.

    python -m bench.run_all [--quick] [--output BENCHMARKS.md] [--no-install]

With defaults it takes about 15-20 minutes on the 2-core box; --quick is a smoke run of a minute or two
whose figures are too small to quote. A benchmark that fails is reported as such and the rest still run.
"""

from __future__ import annotations

import argparse
import datetime
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from bench.processes import PYTHON, Result, machine_facts

ROOT = Path(__file__).resolve().parent.parent


def install() -> None:
    subprocess.run(
        [PYTHON, "-m", "pip", "install", "-q", "-r", str(ROOT / "bench" / "requirements.txt")], check=True, timeout=600
    )


def suite(quick: bool) -> list[tuple[str, Callable[[], list[Result]]]]:
    # Imported here so that --no-install can be followed by an install without a stale import.
    from bench import adaptive, ingest, latency, pump_cost, smoothness, throughput

    if quick:
        return [
            (
                "throughput",
                lambda: [
                    throughput.run(
                        2000, 128, alternatives=True, celery_pool="prefork", celery_concurrency=2, timeout=60
                    )
                ],
            ),
            ("ingest", lambda: [ingest.run(seconds=2)]),
            ("latency", lambda: [latency.run(messages=30)]),
            ("smoothness", lambda: [smoothness.run(rate=600, observe=10)]),
            ("pump cost and memory", lambda: pump_cost.run(2000, 20000, 10, weigh=True)),
        ]
    return [
        # Celery's pool: prefork with one process per core did best of threads x8/x32/x128 and prefork x2/x8
        # in a pilot run on this box, so the reference is given its best setting.
        (
            "throughput",
            lambda: [
                throughput.run(20000, 128, alternatives=True, celery_pool="prefork", celery_concurrency=2, timeout=180)
            ],
        ),
        ("ingest", lambda: [ingest.run(seconds=8)]),
        ("latency", lambda: [latency.run(messages=200, gap=0.02)]),
        ("smoothness", lambda: [smoothness.run(rate=600, observe=60)]),
        ("adaptive pacing", lambda: [adaptive.run(seconds=150)]),
        ("pump cost and memory", lambda: pump_cost.run(10_000, 1_000_000, 50, build_limit=240, weigh=True)),
    ]


def summary(results: list[Result]) -> list[str]:
    lines = [
        "| benchmark | figure | hookpump | reference (same run) | hookpump / reference | run alone |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        for n, row in enumerate(result.rows):
            # The benchmark's title and command once, on its first row.
            title, command = (result.title, f"`{result.command}`") if n == 0 else ("", "")
            lines.append(f"| {title} | {row.figure} | {row.hookpump} | {row.reference} | {row.ratio} | {command} |")
    return lines


def document(facts: str, command: str, results: list[Result], failures: list[str], seconds: float) -> str:
    today = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{command}` on {today}; the whole suite took {seconds / 60:.1f} min.",
        "",
        f"**Machine:** {facts}. Loopback only; every process (Redis, receivers, API, workers, load generators) "
        "shares these cores. The box is shared and noisy: absolute figures drift from run to run by tens of "
        "percent, so each figure stands beside its reference measured in the same run, and the ratio is the "
        "number to compare (for throughput higher is better; for latency, burstiness and memory lower is).",
        "",
        "## Summary",
        "",
        *summary(results),
        "",
    ]
    if failures:
        lines += ["## Not measured in this run", "", *[f"- {failure}" for failure in failures], ""]
    lines += [result.markdown() for result in results]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run with tiny sizes")
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--no-install", action="store_true", help="do not pip install bench/requirements.txt")
    args = parser.parse_args()
    command = "python -m bench.run_all" + (" --quick" if args.quick else "")
    started = time.monotonic()
    if not args.no_install:
        install()
    facts = machine_facts()
    results: list[Result] = []
    failures: list[str] = []
    for name, benchmark in suite(args.quick):
        print(f"== {name}", file=sys.stderr, flush=True)
        try:
            results += benchmark()
        except Exception as exc:  # one broken benchmark must not cost the others their figures
            traceback.print_exc()
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    text = document(facts, command, results, failures, time.monotonic() - started)
    args.output.write_text(text)
    print(text)
    print(f"wrote {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
