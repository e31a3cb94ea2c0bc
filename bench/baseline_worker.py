"""`hookpump worker` with the pacing strategy it had before the adaptive loop (bench/halve_and_pause.lua
in place of core/store/lua/_flow.lua), for bench/adaptive.py's side-by-side run. Not for use.

    python -m bench.baseline_worker   (configured like `hookpump worker`, by HOOKPUMP_* variables)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.store import connection, pump

LUA = Path(connection.__file__).with_name("lua")
BASELINE = Path(__file__).with_name("halve_and_pause.lua")


def _load_baseline(client: Any, name: str, *, preludes: tuple[str, ...] = ("_lib",)) -> Any:
    if "_flow" not in preludes:
        return connection.load_script(client, name, preludes=preludes)
    files = [BASELINE if part == "_flow" else LUA / f"{part}.lua" for part in (*preludes, name)]
    return client.register_script("\n".join(f.read_text(encoding="utf-8") for f in files))


def main() -> None:
    pump.load_script = _load_baseline  # type: ignore[assignment]
    from hookpump.cli import main as hookpump_main

    hookpump_main(["worker"])


if __name__ == "__main__":
    main()
