"""Static checks of the WordPress plugin: `php -l`, phpcs, and the conventions WordPress's standard checks first."""

from __future__ import annotations

import re
import subprocess

from tests.wordpress_site import PLUGIN, require_tool


def test_every_plugin_file_passes_php_lint() -> None:
    php = require_tool("php", "php-cli")
    files = sorted(PLUGIN.rglob("*.php"))
    assert len(files) >= 10
    for path in files:
        result = subprocess.run([php, "-l", str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_plugin_passes_phpcs_with_the_built_in_parts_of_the_wordpress_standard() -> None:
    """integrations/wordpress/phpcs.xml.dist: WPCS itself comes from Packagist, which is not reachable
    here, so this runs the sniffs of WordPress's standard that ship with Debian's PHP_CodeSniffer."""
    phpcs = require_tool("phpcs", "php-codesniffer")
    result = subprocess.run(
        [phpcs, "--standard=phpcs.xml.dist", "--report=emacs"], cwd=PLUGIN, capture_output=True, text=True,
        check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


GETTEXT = re.compile(r"\b(?:__|_e|_x|_n|esc_html__|esc_html_e|esc_attr__|esc_attr_e|esc_html_x|esc_attr_x)\(")


def last_argument(source: str, open_paren: int) -> str:
    """The last argument of the PHP call whose '(' is at `open_paren` (quotes and nesting respected)."""
    depth, quote, argument_start = 0, "", open_paren + 1
    for index in range(open_paren, len(source)):
        char = source[index]
        if quote:
            if char == "\\":
                continue
            if char == quote and source[index - 1] != "\\":
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
            if depth == 0:
                return source[argument_start:index].strip()
        elif char == "," and depth == 1:
            argument_start = index + 1
    raise AssertionError("unbalanced call")


def test_plugin_sources_follow_wordpress_conventions() -> None:
    """What WordPress's coding standard would check first (WPCS itself is not installable here):
    no file runs outside WordPress, and every translatable string has the plugin's text domain."""
    checked = 0
    for path in sorted(PLUGIN.rglob("*.php")):
        source = path.read_text(encoding="utf-8")
        guard = "WP_UNINSTALL_PLUGIN" if path.name == "uninstall.php" else "ABSPATH"
        assert f"defined( '{guard}' ) || exit;" in source, f"{path.name} runs outside WordPress"
        for call in GETTEXT.finditer(source):
            assert last_argument(source, call.end() - 1) == "'hookpump'", (
                f"{path.name}: {call.group(0)} at {call.start()}"
            )
            checked += 1
    assert checked > 50
