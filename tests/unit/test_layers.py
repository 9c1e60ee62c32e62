"""The rules import no Flask: services, archives, storage and tokens load in a fresh interpreter
without ``flask`` (or werkzeug) in ``sys.modules``."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import lti_exchange.archives
import lti_exchange.services
import lti_exchange.storage
import lti_exchange.tokens

FLASK_FREE_PACKAGES = (
    lti_exchange.services,
    lti_exchange.archives,
    lti_exchange.storage,
    lti_exchange.tokens,
)
FLASK_FREE_MODULES = (
    "lti_exchange",
    "lti_exchange.app_objects",
    "lti_exchange.db",
    "lti_exchange.errors",
    "lti_exchange.logging_setup",
)


def flask_free_modules() -> list[str]:
    names = [package.__name__ for package in FLASK_FREE_PACKAGES]
    for package in FLASK_FREE_PACKAGES:
        names += [
            info.name for info in pkgutil.iter_modules(package.__path__, package.__name__ + ".")
        ]
    return sorted(set(names) | set(FLASK_FREE_MODULES))


def test_the_rules_import_no_flask():
    modules = flask_free_modules()
    assert "lti_exchange.services.provisioning" in modules
    assert "lti_exchange.tokens.refresh" in modules
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]", f"Flask is imported by the rules: {done.stdout}"


def test_the_check_would_see_flask():
    """The probe itself works: the web layer does load Flask."""
    script = "import sys, lti_exchange.web.current; print('flask' in sys.modules)"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "True"
