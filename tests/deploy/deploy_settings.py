"""Check PARETORM_* variables from manifests with the service's own settings class.

A ConfigMap or compose file can hold a value `paretorm serve` rejects (an unknown dtype, a batch budget
below the input limit), or a misspelt key that the settings class silently ignores; both only show up when a
pod starts. Validating here moves that failure into the test suite. Importing the settings loads no torch.
"""

from __future__ import annotations

import re

from service.settings import ServiceSettings

COMPOSE_DEFAULT = re.compile(r"\$\{[A-Z0-9_]+:-([^}]*)\}")


def service_settings(env: dict[str, str | None]) -> ServiceSettings:
    """Build `ServiceSettings` from PARETORM_* variables, as `paretorm serve` would; fail on unknown keys.

    PARETORM_MODEL is checked for being a known key but not loaded: the weights directory exists only in the
    container. `None` (compose pass-through) and compose `${VAR:-default}` values use the default."""
    fields: dict[str, str] = {}
    for key, value in env.items():
        assert key.startswith("PARETORM_"), f"{key} is not a paretorm setting; only PARETORM_* belong here"
        field = key.removeprefix("PARETORM_").lower()
        assert field in ServiceSettings.model_fields, f"{key} is not a ServiceSettings field (misspelt?)"
        if field != "model" and value is not None:
            fields[field] = COMPOSE_DEFAULT.sub(r"\1", str(value))
    return ServiceSettings(**fields)
