"""Turn the extension on by writing the config file a wheel install puts in place.

``pip install`` copies ``jupyter-config/jupyter_server_config.d/nbgrader_plugin.json`` into
``{sys.prefix}/etc/jupyter/jupyter_server_config.d``; setuptools' editable installs skip such
data files, and ``jupyter server extension enable`` (jupyter_server 2) only toggles extensions
that a config file already names. ``lti-exchange handoff enable`` writes the same file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from jupyter_core.paths import jupyter_config_dir

EXTENSION = "nbgrader_plugin.server_extension"
CONFIG_FILE = "nbgrader_plugin.json"
CONFIG = {"ServerApp": {"jpserver_extensions": {EXTENSION: True}}}


def config_root(user: bool = False) -> Path:
    """``~/.jupyter`` (``$JUPYTER_CONFIG_DIR``) for one user, else this environment's."""
    return Path(jupyter_config_dir()) if user else Path(sys.prefix) / "etc" / "jupyter"


def enable(root: Path) -> tuple[Path, bool]:
    """Write ``root/jupyter_server_config.d/nbgrader_plugin.json``; return it and whether it
    changed (an existing file enabling the extension is left alone)."""
    path = root / "jupyter_server_config.d" / CONFIG_FILE
    if path.is_file():
        try:
            if json.loads(path.read_text()) == CONFIG:
                return path, False
        except ValueError:
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(CONFIG, indent=2) + "\n")
    return path, True
