"""The app's objects, built once per process and shared by every request, command and worker:
settings, engine, session factory, blob store, key rings and the token service (no Flask)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from lti_exchange.archives.upload import ArchiveLimits
from lti_exchange.config import Settings
from lti_exchange.db import make_engine, make_session_factory
from lti_exchange.keyring import KeyRing
from lti_exchange.storage import BlobStorage, make_storage
from lti_exchange.tokens.access import TOKEN_KEY_PREFIX, TokenService

TOOL_KEY_PREFIX = "tool"


@dataclass
class AppObjects:
    """What ``build_app_objects`` opens; the web layer reaches it through ``web.current``."""

    settings: Settings
    engine: Engine
    session_factory: sessionmaker[Session]
    storage: BlobStorage
    token_keys: KeyRing
    tool_keys: KeyRing
    tokens: TokenService

    @cached_property
    def limits(self) -> ArchiveLimits:
        """The archive bounds of the (frozen) settings, made once: a submit reads them twice."""
        return ArchiveLimits(
            max_upload_bytes=self.settings.max_upload_bytes,
            max_unpacked_bytes=self.settings.max_unpacked_bytes,
            max_members=self.settings.max_archive_members,
        )


def build_app_objects(settings: Settings) -> AppObjects:
    """Open the database and storage and load the key ring described by ``settings``."""
    engine = make_engine(settings)
    delay = settings.key_activation_delay
    token_keys = KeyRing(settings.resolved_keys_dir, TOKEN_KEY_PREFIX, activation_delay=delay)
    return AppObjects(
        settings=settings,
        engine=engine,
        session_factory=make_session_factory(engine),
        storage=make_storage(settings),
        token_keys=token_keys,
        tool_keys=KeyRing(settings.resolved_keys_dir, TOOL_KEY_PREFIX, activation_delay=delay),
        tokens=TokenService(settings, token_keys),
    )
