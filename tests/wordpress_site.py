"""A real WordPress site, a real `hookpump dev` and a loopback receiver for the plugin's end-to-end test.

The site is Debian's /usr/share/wordpress, run by php-cli against its own MariaDB database: a
temporary site root holds symlinks to WordPress's files plus the test's wp-config.php, and
tests/wordpress/harness.php drives it (install, publish, wp-admin requests with a login cookie).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "integrations" / "wordpress"
HARNESS = REPO / "tests" / "wordpress" / "harness.php"
MU_PLUGIN = REPO / "tests" / "wordpress" / "mu-harness.php"
WORDPRESS = Path(os.environ.get("HOOKPUMP_TEST_WORDPRESS", "/usr/share/wordpress"))
DB_HOST = os.environ.get("HOOKPUMP_TEST_MYSQL_HOST", "127.0.0.1:3306")
RESULT = "@@HARNESS@@"
REDIRECT = "@@REDIRECT@@"


def missing_parts() -> list[str]:
    """What this machine lacks to run the WordPress test (empty: nothing)."""
    missing = []
    php = shutil.which("php")
    if php is None:
        return ["php (apt-get install php-cli php-mysql php-curl)"]
    modules = subprocess.run([php, "-m"], capture_output=True, text=True, check=False).stdout.lower().split()
    missing += [f"php-{name}" for name in ("mysqli", "curl") if name not in modules]
    if not (WORDPRESS / "wp-settings.php").exists():
        missing.append(f"WordPress in {WORDPRESS} (apt-get install wordpress)")
    return missing


def require_the_parts() -> None:
    missing = missing_parts()
    if not missing:
        try:
            mysql("SELECT 1")
        except (subprocess.CalledProcessError, OSError) as exc:
            stderr = getattr(exc, "stderr", "") or ""
            missing.append(f"MariaDB/MySQL on 127.0.0.1:3306 as root ({stderr.strip() or exc})")
    if missing:
        message = "WordPress plugin test needs: " + "; ".join(missing)
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        print("\n*** SKIPPING " + message + " ***")
        pytest.skip(message)


def require_tool(name: str, package: str) -> str:
    """The path of a command the static checks need; skipped loudly without it, failed under CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install {package})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        print("\n*** SKIPPING " + message + " ***")
        pytest.skip(message)
    return path


def mysql(sql: str) -> None:
    """Runs one statement as root on the test MariaDB/MySQL, through PHP's mysqli."""
    host, _, port = DB_HOST.partition(":")
    code = (
        "mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);"
        f"$db = new mysqli({json.dumps(host)}, 'root', '', '', {int(port or 3306)});"
        "$db->query(stream_get_contents(STDIN));"
    )
    subprocess.run(["php", "-r", code], input=sql, text=True, check=True, capture_output=True, timeout=30)


@dataclass
class PhpRun:
    output: str
    result: Any  # the JSON the harness printed
    redirects: list[str]


@dataclass
class WordPressSite:
    root: Path
    database: str
    cookies: dict[str, str] = field(default_factory=dict)

    @classmethod
    def create(cls, directory: Path) -> WordPressSite:
        """A site root and an empty database; `install()` puts WordPress in it."""
        database = "hookpump_wp_" + secrets.token_hex(6)
        mysql(f"CREATE DATABASE {database} CHARACTER SET utf8mb4")
        try:
            return cls(cls._lay_out(directory, database), database)
        except BaseException:
            mysql(f"DROP DATABASE IF EXISTS {database}")
            raise

    @staticmethod
    def _lay_out(directory: Path, database: str) -> Path:
        """The site root: symlinks to WordPress, the plugin and the harness's mu-plugin, and wp-config.php."""
        root = directory / "site"
        root.mkdir()
        for entry in WORDPRESS.iterdir():
            if entry.name not in ("wp-config.php", "wp-content", ".htaccess"):
                (root / entry.name).symlink_to(entry)
        content = root / "wp-content"
        (content / "plugins").mkdir(parents=True)
        (content / "mu-plugins").mkdir()
        (content / "themes").symlink_to(WORDPRESS / "wp-content" / "themes")
        (content / "plugins" / "hookpump").symlink_to(PLUGIN)
        (content / "mu-plugins" / "harness.php").symlink_to(MU_PLUGIN)
        salts = "".join(
            f"define('{name}', '{secrets.token_hex(32)}');\n"
            for name in ("AUTH_KEY", "SECURE_AUTH_KEY", "LOGGED_IN_KEY", "NONCE_KEY", "AUTH_SALT",
                         "SECURE_AUTH_SALT", "LOGGED_IN_SALT", "NONCE_SALT")
        )  # fmt: skip
        (root / "wp-config.php").write_text(
            "<?php\n"
            f"define('DB_NAME', '{database}');\ndefine('DB_USER', 'root');\ndefine('DB_PASSWORD', '');\n"
            f"define('DB_HOST', '{DB_HOST}');\ndefine('DB_CHARSET', 'utf8mb4');\ndefine('DB_COLLATE', '');\n"
            f"{salts}$table_prefix = 'wp_';\n"
            f"define('WP_CONTENT_DIR', '{content}');\ndefine('WP_CONTENT_URL', 'http://wp.test/wp-content');\n"
            "define('WP_HOME', 'http://wp.test');\ndefine('WP_SITEURL', 'http://wp.test');\n"
            # WordPress.org is not reachable from a test; hookpump on 127.0.0.1 must be.
            "define('WP_HTTP_BLOCK_EXTERNAL', true);\ndefine('WP_ACCESSIBLE_HOSTS', '127.0.0.1');\n"
            "define('DISABLE_WP_CRON', true);\ndefine('AUTOMATIC_UPDATER_DISABLED', true);\n"
            "define('WP_DEBUG', true);\ndefine('WP_DEBUG_DISPLAY', false);\n"
            # A network once the harness has made one (make_network), as wp-admin's Network Setup asks.
            "if (file_exists(__DIR__ . '/multisite')) {\n"
            "    define('MULTISITE', true);\ndefine('SUBDOMAIN_INSTALL', false);\n"
            "    define('DOMAIN_CURRENT_SITE', 'wp.test');\ndefine('PATH_CURRENT_SITE', '/');\n"
            "    define('SITE_ID_CURRENT_SITE', 1);\ndefine('BLOG_ID_CURRENT_SITE', 1);\n"
            "}\n"
            f"define('WP_DEBUG_LOG', '{directory / 'debug.log'}');\n"
            "require_once ABSPATH . 'wp-settings.php';\n",
            encoding="utf-8",
        )
        return root

    @property
    def debug_log(self) -> Path:
        return self.root.parent / "debug.log"

    def drop(self) -> None:
        mysql(f"DROP DATABASE IF EXISTS {self.database}")

    def php(self, action: str, **arguments: object) -> PhpRun:
        """Runs one harness action in a fresh PHP process (as each web request is one)."""
        completed = subprocess.run(
            ["php", str(HARNESS), str(self.root), action], input=json.dumps(arguments), capture_output=True,
            text=True, timeout=120, check=False,
        )  # fmt: skip
        if completed.returncode != 0:
            raise AssertionError(f"php {action} exited {completed.returncode}:\n{completed.stdout}\n{completed.stderr}")
        output, result = completed.stdout, None
        for line in output.splitlines():
            if line.startswith(RESULT):
                result = json.loads(line[len(RESULT) :])
        redirects = [line[len(REDIRECT) :] for line in output.splitlines() if line.startswith(REDIRECT)]
        return PhpRun(output, result, redirects)

    def request(self, file: str, get: dict[str, str] | None = None, post: dict[str, str] | None = None) -> PhpRun:
        """A wp-admin request as the logged-in administrator's browser would send it."""
        return self.php(
            "request", file=file, get=get or {}, post=post or {}, cookies=self.cookies,
            method="POST" if post is not None else "GET",
        )  # fmt: skip


class HookpumpDev:
    """`hookpump dev` as a subprocess on a free port; stop() and start() keep its data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / "hookpump-dev.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin_key(self) -> str:
        return (self.data_dir / "admin-key").read_text(encoding="utf-8").strip()

    def start(self) -> None:
        env = {name: value for name, value in os.environ.items() if not name.startswith("HOOKPUMP_")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        env.update(
            HOOKPUMP_DATA_DIR=str(self.data_dir), HOOKPUMP_PORT=str(self.port), HOOKPUMP_PUMP_INTERVAL="1",
            HOOKPUMP_RETRY_BASE="1",
        )  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hookpump", "dev"], env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("hookpump dev exited:\n" + self.log.read_text(errors="replace")[-3000:])
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("hookpump dev did not answer /healthz within 60 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers 200 on /hook; on /fail the first request gets 400, later ones 200. With `get_body`,
    a GET gets 200 and that body (a server that is not hookpump)."""

    get_body: bytes | None = None
    hits: list[Hit] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver.lock:
                    receiver.hits.append(Hit(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    seen = len(receiver.on(self.path))
                status = 400 if self.path == "/fail" and seen == 1 else 200
                self.send_response(status)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"no" if status == 400 else b"ok")

            def do_GET(self) -> None:
                if receiver.get_body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("content-length", str(len(receiver.get_body)))
                self.end_headers()
                self.wfile.write(receiver.get_body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def on(self, path: str) -> list[Hit]:
        return [hit for hit in self.hits if hit.path == path]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class HungServer:
    """A hookpump that hangs: it accepts connections and never answers (nor closes them)."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.held: list[socket.socket] = []
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:  # closed
                return
            self.held.append(connection)
            self.accepted += 1

    def close(self) -> None:
        self.listener.close()
        for connection in self.held:
            connection.close()


def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Polls `check` until it returns something truthy; fails with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)
