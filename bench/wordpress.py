"""What hookpump costs a WordPress site: a request that publishes 20 posts while hookpump hangs (a
socket that accepts and never answers), and the time one event adds to a request with hookpump up.

    python -m bench.wordpress --runs 15

Needs what tests/test_wordpress.py needs (php-cli, php-mysql, php-curl, Debian's wordpress, MariaDB on
127.0.0.1:3306). Each request is one php-cli process running tests/wordpress/harness.php, as a web
request is one PHP request. "request" is the whole process (PHP's start, WordPress's load, the work,
the plugin's end-of-request sends); "work" is from WordPress loaded to the end of the request.
Targets (issue 22): 20 posts with hookpump hung <= 3.5 s in all; one event with hookpump up <= 50 ms.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import httpx

from bench.processes import machine_facts
from tests.wordpress_site import HookpumpDev, HungServer, Receiver, WordPressSite, require_the_parts

HUNG_POSTS = 20


def make_site(directory: Path) -> WordPressSite:
    site = WordPressSite.create(directory)
    site.php("install")
    site.php("activate")
    return site


def hung_bulk_publish(site: WordPressSite, runs: int) -> list[tuple[float, float]]:
    """(request, work) seconds of a request publishing HUNG_POSTS posts with hookpump hung."""
    hung = HungServer()
    site.php(
        "configure", hookpump_url=hung.url, hookpump_send_key="hp_bench", hookpump_enabled_rules=["post_published"]
    )
    timings = []
    try:
        for run in range(runs):
            site.php("forget_unreachable")  # each run meets the hang afresh, as the first request would
            result = site.php("publish_posts", title=f"Bulk {run}", n=HUNG_POSTS).result
            assert len(result["outbox"]) == HUNG_POSTS * (run + 1), "every post is kept in the outbox"
            timings.append((result["elapsed"], result["work"]))
    finally:
        hung.close()
    return timings


def one_event_cost(site: WordPressSite, directory: Path, runs: int) -> tuple[list[float], list[float]]:
    """The work of a request publishing one post, with the rule off and on (hookpump up, one endpoint)."""
    receiver = Receiver()
    receiver.start()
    hookpump = HookpumpDev(directory / "hookpump")
    try:
        hookpump.start()
        admin = {"Authorization": f"Bearer {hookpump.admin_key}"}
        key = httpx.post(hookpump.url + "/v1/api-keys", json={"name": "bench", "scopes": ["send"]}, headers=admin)
        endpoint = {"url": receiver.url("/hook"), "rate_limit_per_minute": 6000}
        assert httpx.post(hookpump.url + "/v1/endpoints", json=endpoint, headers=admin).status_code == 201
        site.php("configure", hookpump_url=hookpump.url, hookpump_send_key=key.json()["key"])
        site.php("run_cron")  # empties the outbox the hung runs left, so no flush rides on a timed request
        without, with_event = [], []
        for run in range(runs):
            site.php("configure", hookpump_enabled_rules=[])
            without.append(site.php("publish_post", title=f"Quiet {run}").result["work"])
            site.php("configure", hookpump_enabled_rules=["post_published"])
            sent = site.php("publish_post", title=f"Sent {run}").result
            assert sent["outbox"] == [], "hookpump took the event"
            with_event.append(sent["work"])
        return without, with_event
    finally:
        hookpump.stop()
        receiver.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15, help="requests timed per figure")
    args = parser.parse_args()
    require_the_parts()
    print(machine_facts())
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        site = make_site(directory)
        try:
            hung = hung_bulk_publish(site, max(3, args.runs // 3))
            requests, works = [r for r, _ in hung], [w for _, w in hung]
            print(f"{HUNG_POSTS} posts in one request, hookpump hung: request median "
                  f"{statistics.median(requests):.2f} s, max {max(requests):.2f} s "
                  f"(work median {statistics.median(works):.2f} s); target <= 3.5 s")  # fmt: skip
            without, with_event = one_event_cost(site, directory, args.runs)
            added = (statistics.median(with_event) - statistics.median(without)) * 1000
            print(f"one post, no event: work median {statistics.median(without) * 1000:.0f} ms; "
                  f"one event sent to hookpump: {statistics.median(with_event) * 1000:.0f} ms; "
                  f"added {added:.0f} ms (median of {args.runs}); target <= 50 ms")  # fmt: skip
        finally:
            site.drop()


if __name__ == "__main__":
    main()
