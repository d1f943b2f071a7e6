"""Finds adapters and sandbox CRMs by kind through entry points; the core never imports one by name."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, cast

from connector.errors import ConfigError, ConfigProblem
from connector.protocol import (
    AdapterFactory,
    ConnectionSettings,
    CrmAdapter,
    KeyValueStore,
    RecordIdNormaliser,
)

ADAPTER_GROUP = "crm_risk_connector.adapters"
SANDBOX_GROUP = "crm_risk_connector.sandboxes"


def _entry_points(group: str) -> dict[str, EntryPoint]:
    return {entry.name: entry for entry in entry_points(group=group)}


def available_adapters() -> list[str]:
    """Kinds of CRM this installation can talk to."""
    return sorted(_entry_points(ADAPTER_GROUP))


def available_sandboxes() -> list[str]:
    """Kinds of local sandbox CRM this installation can start."""
    return sorted(_entry_points(SANDBOX_GROUP))


def _load(group: str, kind: str, what: str) -> Any:
    found = _entry_points(group)
    if kind not in found:
        names = ", ".join(sorted(found)) or "none installed"
        raise ConfigError(
            [ConfigProblem("kind", f"no {what} named {kind!r}", f"available: {names}")]
        )
    # Imported lazily: a broken adapter does not break the others.
    return found[kind].load()


def adapter_factory(kind: str) -> AdapterFactory:
    """The adapter entry point of this kind (imported on first use).

    Raises:
        ConfigError: when no adapter of that kind is installed (key path `kind`).
    """
    return cast(AdapterFactory, _load(ADAPTER_GROUP, kind, "adapter"))


def settings_model(kind: str) -> type[ConnectionSettings]:
    """The strict settings model the adapter of this kind validates its connections with.

    Raises:
        ConfigError: when no adapter of that kind is installed, or it declares no settings model.
    """
    model = getattr(adapter_factory(kind), "settings_model", None)
    if not (isinstance(model, type) and issubclass(model, ConnectionSettings)):
        raise ConfigError(
            [
                ConfigProblem(
                    "kind",
                    f"the {kind!r} adapter declares no settings model",
                    "its entry point must name a factory with a settings_model attribute",
                )
            ]
        )
    return model


def create_adapter(
    settings: ConnectionSettings, *, state: KeyValueStore | None = None, **options: Any
) -> CrmAdapter:
    """Build the adapter for `settings.kind`.

    Args:
        settings: the connection's settings, an instance of the kind's settings_model.
        state: a small persistent store for tokens (the state store).
        **options: passed to the adapter (tests pass `sleep` to skip real back-off waits).

    Returns:
        An adapter instance that satisfies the CrmAdapter protocol.

    Raises:
        ConfigError: when no adapter of that kind is installed.
    """
    return adapter_factory(settings.kind)(settings, state=state, **options)


def record_id_normaliser(kind: str) -> Callable[[str], str]:
    """The adapter class's RecordIdNormaliser, or identity when it has none (no credentials needed).

    Raises:
        ConfigError: when no adapter of that kind is installed.
    """
    factory = _load(ADAPTER_GROUP, kind, "adapter")
    if isinstance(factory, RecordIdNormaliser):
        return factory.normalise_record_id
    return lambda text: text


def sandbox_starter(kind: str) -> Callable[..., Any]:
    """The function that starts the local sandbox CRM of this kind."""
    return cast(Callable[..., Any], _load(SANDBOX_GROUP, kind, "sandbox CRM"))
