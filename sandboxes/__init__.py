"""Local sandbox CRMs: start a seeded Salesforce, Zoho or Fxiaoke CRM emulator on loopback, in-process or as a CLI.

Emulator classes follow one convention so this module can start any of them:
`Cls(portfolio: Portfolio)` builds it; attributes `client_id`, `client_secret` and, where the
CRM uses them, `refresh_token`, `username`, `password` give the demo credentials;
`records(obj)`, `tasks()`, `expire_tokens()` serve tests; optional `load_state(path)` and
`save_state(path)` persist it; an optional `call_counts` attribute is replaced by the live
counter of the server.
"""

from __future__ import annotations

import argparse
import importlib
import json
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from sandboxes.lifecycle import StopsOnExit
from sandboxes.seed import Portfolio, PortfolioStream, generate, stream
from sandboxes.server import Faults, SandboxServer

__all__ = [
    "Faults",
    "RunningSandbox",
    "SandboxServer",
    "main",
    "start",
    "start_fxiaoke",
    "start_salesforce",
    "start_zoho",
]


STREAM_ABOVE = 5000


@dataclass(frozen=True)
class _Kind:
    module: str
    cls: str
    token_path: str
    mapping: str
    auth: str
    api_version: str | None
    # Extra lines of the connection section (the Fxiaoke preset's users read Chinese).
    extra: tuple[str, ...] = ()


_KINDS = {
    "salesforce": _Kind(
        "sandboxes.salesforce",
        "SalesforceEmulator",
        "/services/oauth2/token",
        # Both invoice objects are served: Invoice__c carries paid dates, Billing's
        # blng__Invoice__c gets them from payment allocations (the salesforce.billing preset).
        "salesforce.custom-invoice",
        "client_credentials",
        "62.0",
    ),
    "zoho": _Kind(
        "sandboxes.zoho",
        "ZohoEmulator",
        "/oauth/v2/token",
        "zoho.inventory",
        "refresh_token",
        None,
    ),
    "fxiaoke": _Kind(
        "sandboxes.fxiaoke",
        "FxiaokeEmulator",
        "/oauth2.0/token",
        "fxiaoke.payment-plan",
        # The current token style (headers); `auth = "legacy"` selects the body style.
        "app_secret",
        None,
        ('policy = { language = "zh" }', 'tasks = { language = "zh" }'),
    ),
}


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


@dataclass
class RunningSandbox(StopsOnExit):
    """A started sandbox: its URLs, demo credentials, server and emulator."""

    crm: str
    server: SandboxServer
    emulator: Any
    token_url: str
    login_url: str
    client_id: str
    client_secret: str
    refresh_token: str | None = None
    username: str | None = None
    password: str | None = None
    mapping: str = ""
    auth: str = ""
    api_version: str | None = None
    state_file: str | None = None
    extra: tuple[str, ...] = ()
    _stopped: bool = field(default=False, repr=False)

    @property
    def base_url(self) -> str:
        """API host (Salesforce instance URL, Zoho api_domain)."""
        return self.server.base_url

    @property
    def ca_bundle(self) -> str | None:
        """Path of the test CA's PEM (None for plain HTTP)."""
        return self.server.ca_bundle

    @property
    def connection_name(self) -> str:
        """Name of the connection in config_snippet()."""
        return f"sandbox_{self.crm}"

    def config_snippet(self) -> str:
        """A TOML `[connections.sandbox_<crm>]` section; secrets come from env_vars()."""
        lines = [
            f"[connections.{self.connection_name}]",
            f"kind = {_toml_str(self.crm)}",
            f"mapping = {_toml_str(self.mapping)}",
            f"token_url = {_toml_str(self.token_url)}",
            f"auth = {_toml_str(self.auth)}",
            f"client_id = {_toml_str(self.client_id)}",
        ]
        # Salesforce takes its instance URL from the token answer: it has no base_url setting.
        if self.crm == "salesforce":
            lines.append(f"login_url = {_toml_str(self.login_url)}")
        else:
            lines.append(f"base_url = {_toml_str(self.base_url)}")
        if self.api_version:
            lines.append(f"api_version = {_toml_str(self.api_version)}")
        if self.username:
            lines.append(f"username = {_toml_str(self.username)}")
        if self.ca_bundle:
            lines.append(f"ca_bundle = {_toml_str(self.ca_bundle)}")
        lines.extend(self.extra)
        return "\n".join(lines) + "\n"

    def env_vars(self) -> dict[str, str]:
        """Secret settings as the environment variables the connector reads."""
        prefix = f"CRMRISK_CONNECTIONS__{self.connection_name.upper()}__"
        out = {f"{prefix}CLIENT_SECRET": self.client_secret}
        if self.refresh_token:
            out[f"{prefix}REFRESH_TOKEN"] = self.refresh_token
        if self.password:
            out[f"{prefix}PASSWORD"] = self.password
        return out

    def describe(self) -> dict[str, Any]:
        """Everything a client needs, as printed by `serve --json`."""
        return {
            "crm": self.crm,
            "base_url": self.base_url,
            "token_url": self.token_url,
            "login_url": self.login_url,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "refresh_token": self.refresh_token,
            "username": self.username,
            "password": self.password,
            "ca_bundle": self.ca_bundle,
            "config_snippet": self.config_snippet(),
            "env": self.env_vars(),
        }

    def stop(self) -> None:
        """Save state (if a state file was given) and stop the server."""
        if self._stopped:
            return
        self._stopped = True
        self.server.stop()
        if self.state_file and hasattr(self.emulator, "save_state"):
            self.emulator.save_state(self.state_file)


def start(
    kind: str,
    *,
    port: int = 0,
    accounts: int = 60,
    seed: int = 7,
    latency_ms: float = 0,
    faults: Faults | None = None,
    tls: bool = True,
    state_file: str | None = None,
    invoices_per_account: int = 10,
    **emulator_options: Any,
) -> RunningSandbox:
    """Seed and start a sandbox CRM of `kind` ("salesforce" or "zoho").

    Args:
        kind: which CRM to emulate.
        port: TCP port on 127.0.0.1; 0 picks a free one.
        accounts: number of seeded accounts.
        seed: RNG seed of the demo data.
        latency_ms: added to every response (overrides faults.latency_ms when non-zero).
        faults: the fault plan; mutate `running.server.faults` later to switch faults on and off.
        tls: HTTPS with a throw-away CA (default) or plain HTTP.
        state_file: JSON file loaded at start (if it exists) and saved on stop.
        invoices_per_account: invoices per seeded account.
        **emulator_options: passed to the emulator class (e.g. daily_api_limit). Above
            STREAM_ABOVE accounts the Salesforce org seeds only `Invoice__c` unless
            `invoice_objects` says otherwise (100k accounts x 10 invoices take ~0.9 GB).

    Returns:
        The running sandbox; stop it (or use it as a context manager) when done.

    Raises:
        ValueError: for an unknown kind.
        NotImplementedError: when that emulator is not available yet.
    """
    spec = _KINDS.get(kind)
    if spec is None:
        raise ValueError(f"unknown sandbox kind {kind!r}; choose one of {', '.join(_KINDS)}")
    emulator_cls = _emulator_class(kind, spec)
    portfolio: Portfolio | PortfolioStream
    if accounts > STREAM_ABOVE and getattr(emulator_cls, "accepts_stream", False):
        # Never hold the seed and the emulator's copy at once for benchmark-sized orgs.
        portfolio = stream(accounts=accounts, seed=seed, invoices_per_account=invoices_per_account)
    else:
        portfolio = generate(
            accounts=accounts, seed=seed, invoices_per_account=invoices_per_account
        )
    if kind == "salesforce" and accounts > STREAM_ABOVE:
        # ~1 KB per invoice row: a second invoice shape would double a benchmark org's memory.
        # The default connection maps Invoice__c (it carries paid dates), so that is the one kept.
        emulator_options.setdefault("invoice_objects", ("Invoice__c",))
    emulator = emulator_cls(portfolio, **emulator_options)
    if state_file and Path(state_file).exists() and hasattr(emulator, "load_state"):
        emulator.load_state(state_file)
    plan = faults or Faults()
    if latency_ms:
        plan.latency_ms = latency_ms
    server = SandboxServer(emulator, port=port, tls=tls, faults=plan)
    if hasattr(emulator, "call_counts"):
        emulator.call_counts = server.calls
    server.start()
    return _running(kind, spec, server, emulator, state_file)


def _emulator_class(kind: str, spec: _Kind) -> Any:
    """The emulator class of a kind, imported on first use."""
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError as exc:
        if exc.name == spec.module:
            raise NotImplementedError(f"the {kind} sandbox is not implemented yet") from exc
        raise
    return getattr(module, spec.cls)


def _running(
    kind: str, spec: _Kind, server: SandboxServer, emulator: Any, state_file: str | None
) -> RunningSandbox:
    """The started server's URLs and the emulator's demo credentials."""
    base = server.base_url
    return RunningSandbox(
        crm=kind,
        server=server,
        emulator=emulator,
        token_url=base + spec.token_path,
        login_url=base,
        client_id=str(emulator.client_id),
        client_secret=str(emulator.client_secret),
        refresh_token=getattr(emulator, "refresh_token", None),
        username=getattr(emulator, "username", None),
        password=getattr(emulator, "password", None),
        mapping=spec.mapping,
        auth=spec.auth,
        api_version=spec.api_version,
        state_file=state_file,
        extra=spec.extra,
    )


def start_salesforce(**opts: Any) -> RunningSandbox:
    """Start the Salesforce sandbox (options as for `start`)."""
    return start("salesforce", **opts)


def start_zoho(**opts: Any) -> RunningSandbox:
    """Start the Zoho CRM sandbox (options as for `start`)."""
    return start("zoho", **opts)


def start_fxiaoke(**opts: Any) -> RunningSandbox:
    """Start the Fxiaoke (纷享销客) sandbox (options as for `start`)."""
    return start("fxiaoke", **opts)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crm-risk sandbox", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a seeded sandbox CRM until SIGTERM/SIGINT")
    serve.add_argument("--crm", choices=sorted(_KINDS), default="salesforce")
    serve.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free)")
    serve.add_argument("--accounts", type=int, default=60, help="seeded accounts")
    serve.add_argument("--seed", type=int, default=7, help="seed of the demo data")
    serve.add_argument("--latency-ms", type=float, default=0, help="delay added to each response")
    serve.add_argument(
        "--faults", default="", help="fault plan, e.g. 'rate_429=0.1,burst_503=2,latency_ms=50'"
    )
    serve.add_argument("--state-file", default=None, help="JSON file to load at start and save")
    serve.add_argument("--plain-http", action="store_true", help="serve HTTP instead of HTTPS")
    serve.add_argument("--json", action="store_true", help="print one JSON line when ready")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m sandboxes serve ...`: print URLs and credentials, serve until a signal."""
    args = _parser().parse_args(argv)
    try:
        faults = Faults.parse(args.faults)
    except ValueError as exc:
        print(f"--faults: {exc}", file=sys.stderr)
        return 2
    try:
        running = start(
            args.crm,
            port=args.port,
            accounts=args.accounts,
            seed=args.seed,
            latency_ms=args.latency_ms,
            faults=faults,
            tls=not args.plain_http,
            state_file=args.state_file,
        )
    except NotImplementedError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        info = running.describe()
        if args.json:
            print(json.dumps(info), flush=True)
        else:
            print(f"{args.crm} sandbox ready at {running.base_url}")
            print(f"  token URL:     {running.token_url}")
            print(f"  client id:     {running.client_id}")
            print(f"  client secret: {running.client_secret}")
            if running.refresh_token:
                print(f"  refresh token: {running.refresh_token}")
            if running.username:
                print(f"  username:      {running.username}")
                print(f"  password:      {running.password}")
            print(f"  CA bundle:     {running.ca_bundle}")
            print("\nConfig section (secrets go in the environment):\n")
            print(running.config_snippet())
            for key, value in running.env_vars().items():
                print(f"export {key}={value}")
            print("\nServing until Ctrl-C or SIGTERM.", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        running.stop()
    return 0
