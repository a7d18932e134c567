"""`berth login`, `berth logout`, `berth whoami`: profiles and the keys in them.

Signing in with a password mints an API key for this CLI (`cli@<host>`) and ends the sign-in
session at once: a profile holds a key, revocable on its own, never a session token.
"""

import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from berth_cli import output
from berth_cli.client import BerthClient
from berth_cli.client.accounts import ApiKeyView, AuthUser, Tier
from berth_cli.commands._shared import DEFAULT_PROFILE, JsonOption, ProfileOption
from berth_cli.errors import ApiError, CliError, NotConfigured
from berth_cli.profiles import Profile, ProfileStore, resolve

app = typer.Typer()

LOCAL_STACK_URL = "http://127.0.0.1:7500"
PasswordStdinOption = Annotated[bool, typer.Option(
    "--password-stdin", help="Read the password from the first line of stdin instead of prompting.")]


@app.command()
def login(
    api: Annotated[str, typer.Option("--api", envvar="BERTH_API_URL", help="berth's API URL.")] = LOCAL_STACK_URL,
    key: Annotated[str | None, typer.Option(
        "--key", help="Store this API key (bak_...) instead of signing in; `-` reads it from stdin.")] = None,
    email: Annotated[str | None, typer.Option("--email", help="Sign in as this user (prompted when left out).")] = None,
    password_stdin: PasswordStdinOption = False,
    tier: Annotated[Tier, typer.Option("--tier", help="The tier of the key minted for this CLI.")] = "standard",
    show_key: Annotated[bool, typer.Option("--show-key", help="Also print the minted key, this once.")] = False,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Save a profile: sign in and mint an API key for this CLI, or store a key you have."""
    if not api.startswith(("http://", "https://")):
        raise typer.BadParameter(f"{api!r} is not an http:// or https:// URL", param_hint="--api")
    if key is not None and (email is not None or password_stdin):
        raise typer.BadParameter("give either --key, or --email and a password", param_hint="--key")
    store = ProfileStore()
    previous = store.get(profile)  # also checks the file is usable before anything is minted
    minted: ApiKeyView | None = None
    if key is not None:
        secret = sys.stdin.readline().strip() if key == "-" else key
        user = _check_key(api, secret)
        saved = Profile(api_url=api, api_key=secret, email=user["email"])
        store.save(profile, saved)
        if previous and previous.minted:
            output.note(f"profile '{profile}' replaced; the key login minted for it before ({previous.key_id}) "
                        f"stays valid until revoked")
    else:
        with signed_in(api, email or typer.prompt("Email"), read_password(password_stdin)) as (client, user):
            created = client.accounts.generate_key(f"cli@{socket.gethostname()}"[:100], tier)
            minted = created["api_key"]
            saved = Profile(api_url=api, api_key=created["key"], email=user["email"], key_id=minted["id"],
                            key_name=minted["name"], tier=minted["tier"])
            store.save(profile, saved)
            if previous and previous.key_id and previous.api_url == api:
                _revoke_replaced(client, previous.key_id)
    if as_json:
        summary: dict = {"profile": profile, "api_url": api, "config_file": str(store.path), "user": user,
                         "api_key": minted}
        output.print_json({**summary, "key": saved.api_key} if show_key else summary)
        return
    output.stdout.print(f"Logged in to {output.text(api)} as {output.text(user['name'])} "
                        f"<{output.text(user['email'])}>, workspace {output.text(user['workspace'])}.")
    stored = f"API key {minted['name']} ({minted['tier']}, {minted['id']})" if minted else "API key"
    output.stdout.print(f"{output.text(stored)} saved to profile '{output.text(profile)}' in "
                        f"{output.text(store.path)}.")
    if show_key:
        output.stdout.print(f"Key (shown this once): {saved.api_key}", markup=False)


def _check_key(api: str, secret: str) -> AuthUser:
    """Store a key only once it has answered: an API key (not a session token) that works."""
    if not secret.startswith("bak_"):
        raise typer.BadParameter("expected an API key (bak_...); sign in with --email to mint one",
                                 param_hint="--key")
    with BerthClient(api, secret) as client:
        return client.accounts.me()["user"]


@contextmanager
def signed_in(api: str, email: str, password: str) -> Iterator[tuple[BerthClient, AuthUser]]:
    """A client holding a session for the few requests that need one; the session ends after."""
    with BerthClient(api) as anonymous:
        session = anonymous.accounts.login(email, password)
    with BerthClient(api, session["token"]) as client:
        try:
            yield client, session["user"]
        finally:
            _end_session(client)


def _revoke_replaced(client: BerthClient, key_id: str) -> None:
    """A new login to a profile revokes the key the last one minted for it, so keys do not pile up."""
    try:
        client.accounts.revoke_key(key_id)
    except ApiError as error:
        if error.status != 404:  # 404: deleted meanwhile, nothing to revoke
            output.note(f"note: the profile's previous key {key_id} could not be revoked: {error.message}")


def _end_session(client: BerthClient) -> None:
    try:
        client.accounts.logout()
    except CliError as error:  # the key is what matters; the session lapses on its own
        output.note(f"note: the sign-in session could not be ended ({error.message}); it expires by itself")


def read_password(from_stdin: bool) -> str:
    password = sys.stdin.readline().rstrip("\r\n") if from_stdin else typer.prompt("Password", hide_input=True)
    if not password:
        raise typer.BadParameter("the password is empty", param_hint="--password-stdin" if from_stdin else None)
    return password


@app.command()
def logout(
    keep_key: Annotated[bool, typer.Option(
        "--keep-key", help="Forget the profile without revoking the key `berth login` minted for it.")] = False,
    password_stdin: PasswordStdinOption = False,
    profile: ProfileOption = DEFAULT_PROFILE,
    as_json: JsonOption = False,
) -> None:
    """Forget a profile, revoking the key `berth login` minted for it.

    Only admin-tier keys may revoke keys, so for others this signs in once more (the password
    is asked for, or read with --password-stdin).
    """
    store = ProfileStore()
    saved = store.get(profile)
    if saved is None:
        raise NotConfigured(f"no profile '{profile}' in {store.path}")
    revoked = None
    if saved.minted and not keep_key:
        try:
            revoked = _revoke(saved, password_stdin)
        except CliError:
            output.note(f"profile '{profile}' kept; `berth logout --keep-key` forgets it without revoking its key")
            raise
    store.remove(profile)
    if as_json:
        output.print_json({"profile": profile, "forgotten": True, "revoked": revoked})
    elif revoked:
        output.stdout.print(f"Revoked API key {output.text(revoked['name'])} ({output.text(revoked['id'])}) "
                            f"and forgot profile '{output.text(profile)}'.")
    else:
        output.stdout.print(f"Forgot profile '{output.text(profile)}'.")


def _revoke(saved: Profile, password_stdin: bool) -> ApiKeyView | None:
    assert saved.key_id is not None
    if saved.tier == "admin":
        with BerthClient(saved.api_url, saved.api_key) as client:
            return client.accounts.revoke_key(saved.key_id)
    if not saved.email:
        raise NotConfigured("this profile does not say who minted its key; `berth logout --keep-key` forgets it")
    if not password_stdin:
        output.note(f"Revoking this CLI's key needs {saved.email}'s password.")
    with signed_in(saved.api_url, saved.email, read_password(password_stdin)) as (client, _user):
        try:
            return client.accounts.revoke_key(saved.key_id)
        except ApiError as error:
            if error.status == 404:  # deleted meanwhile: nothing left to revoke
                return None
            raise


@app.command()
def whoami(profile: ProfileOption = DEFAULT_PROFILE, as_json: JsonOption = False) -> None:
    """Who the profile's key belongs to (`/v1/auth/me`)."""
    connection = resolve(profile)
    with BerthClient(connection.api_url, connection.api_key) as client:
        me = client.accounts.me()
    if as_json:
        output.print_json(me)
        return
    user = me["user"]
    output.fields([
        ("user", f"{output.text(user['name'])} <{output.text(user['email'])}>"),
        ("role", output.text(user["role"])),
        ("workspace", f"{output.text(user['workspace'])} ({output.text(user['workspace_id'])})"),
        ("signed in with", "an API key" if me["auth"] == "api_key" else "a session token"),
        ("API", output.text(connection.api_url)),
        ("from", output.text(connection.source)),
    ])
