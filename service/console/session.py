"""Who is looking: sign-in with an API key, exchanged for an opaque server-side session (cookie
HttpOnly, SameSite=Strict, Path=/ui, expiring), and the checks every form that changes something
passes: same Origin, the session's CSRF token, and the admin scope.

A session names its key by id and is checked against the key on every request, so deleting the key
signs its sessions out. Sign-ins with a wrong key count against the client address's guessing limit,
which the JSON API shares (service/guessing.py).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from core.models import ApiKey, Scope
from core.store import Session
from service.auth import ADMIN_ONLY, BOOTSTRAP, can, check_scope
from service.console.render import render
from service.context import context
from service.problems import Problem

logger = logging.getLogger(__name__)

COOKIE = "hookpump_console"
COOKIE_PATH = "/ui"
SESSION_SECONDS = 12 * 3600
MAX_FORM_BYTES = 16 * 1024
HOME = "/ui/"


class SignInRequired(Exception):
    """No valid session: the page sends the browser to the sign-in form."""


@dataclass(frozen=True, slots=True)
class Viewer:
    key: ApiKey
    csrf: str

    @property
    def can_act(self) -> bool:
        return can(self.key, ADMIN_ONLY)


Form = dict[str, list[str]]


async def viewer(request: Request) -> Viewer:
    """The signed-in operator, re-checked against their API key; else SignInRequired."""
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 200:
        raise SignInRequired
    ctx = context(request)
    session = await ctx.store.sessions.get(token)
    if session is None:
        raise SignInRequired
    key = await _key_of(request, session)
    if key is None:
        await ctx.store.sessions.delete(token)
        raise SignInRequired
    return Viewer(key, session.csrf)


async def _key_of(request: Request, session: Session) -> ApiKey | None:
    ctx = context(request)
    if session.key_id == BOOTSTRAP.id:
        return BOOTSTRAP if ctx.auth.is_bootstrap(session.key_digest) else None
    return await ctx.store.api_keys.by_id(session.key_id)


async def acting_viewer(request: Request) -> tuple[Viewer, Form]:
    """For a form that changes something: same origin, a valid CSRF token, and an admin key."""
    check_origin(request)
    who = await viewer(request)
    form = await read_form(request)
    token = field(form, "csrf")
    if not hmac.compare_digest(token.encode(), who.csrf.encode()):
        raise Problem(403, "This form's security token is missing or stale; reload the page and try again.")
    check_scope(who.key, ADMIN_ONLY, "this action")
    return who, form


def check_origin(request: Request) -> None:
    """A state-changing request must come from a page of this console: its Origin names our host.

    Host and port are compared, not the scheme: behind a proxy that ends TLS the app may see http while
    the browser says https, and a different host or port is what a cross-site request always has."""
    origin = request.headers.get("origin")
    if origin is None:
        if request.headers.get("sec-fetch-site") == "same-origin":
            return
        raise Problem(403, "This request did not say where it came from (no Origin header); use the console's forms.")
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.netloc != request.url.netloc:
        raise Problem(403, "This request came from another site; use the console's own forms.")


async def read_form(request: Request) -> Form:
    """An urlencoded form body (parsed here rather than with python-multipart, the one other choice)."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise Problem(415, "Send the form as application/x-www-form-urlencoded.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Problem(413, "This form is too large.")
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Problem(400, "This form could not be read.") from exc


def field(form: Form, name: str) -> str:
    values = form.get(name)
    return values[0] if values else ""


def safe_next(target: str | None) -> str:
    """Where to go after a form: only a path inside the console (never another site)."""
    if not target or not target.startswith(HOME) or target.startswith("//") or "\\" in target:
        return HOME
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return HOME
    return target


def sign_in_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    location = f"/ui/login?next={quote(safe_next(target), safe='')}"
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": location})
    return RedirectResponse(location, status_code=303)


async def on_sign_in_required(request: Request, exc: Exception) -> Response:
    return sign_in_redirect(request)


async def login(request: Request) -> Response:
    next_page = safe_next(request.query_params.get("next"))
    if request.method == "GET":
        return render(request, "login.html", next_page=next_page, error=None)
    check_origin(request)
    ctx = context(request)
    address = request.client.host if request.client else None
    form = await read_form(request)
    next_page = safe_next(field(form, "next"))
    key = await ctx.auth.authenticate(field(form, "key").strip(), address)
    if key is None or not (can(key, frozenset({Scope.READ}))):
        logger.info("console sign-in refused from %s", address)
        error = "That key is unknown, was deleted, or may not read." if key is None else \
            "That key may only send messages; the console needs a read or admin key."
        return render(request, "login.html", 401, next_page=next_page, error=error)
    digest = ""
    if key is BOOTSTRAP:
        digest = _sha256(field(form, "key").strip())
    token, _session = await ctx.store.sessions.create(key.id, digest, SESSION_SECONDS)
    logger.info("console sign-in by %s", key.id)
    response = RedirectResponse(next_page, status_code=303)
    response.set_cookie(COOKIE, token, max_age=SESSION_SECONDS, path=COOKIE_PATH, httponly=True,
                        samesite="strict", secure=is_https(request))
    return response


async def logout(request: Request) -> Response:
    check_origin(request)
    who = await viewer(request)
    form = await read_form(request)
    if not hmac.compare_digest(field(form, "csrf").encode(), who.csrf.encode()):
        raise Problem(403, "This form's security token is missing or stale; reload the page and try again.")
    await context(request).store.sessions.delete(request.cookies[COOKIE])
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(COOKIE, path=COOKIE_PATH, httponly=True, samesite="strict")
    return response


def is_https(request: Request) -> bool:
    """Whether people reach the console over https: the request's scheme (a trusted proxy's
    X-Forwarded-Proto included, HOOKPUMP_TRUSTED_PROXIES) or HOOKPUMP_PUBLIC_URL says so."""
    public_url = context(request).settings.public_url
    return request.url.scheme == "https" or (public_url or "").lower().startswith("https://")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()
