"""The base class every plugin class shares: settings, tokens, the HTTP client, local paths."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from textwrap import dedent

from jupyter_core.paths import jupyter_data_dir
from nbgrader.exchange.abc import Exchange as ABCExchange
from nbgrader.utils import ignore_patterns
from traitlets import Bool, Float, Integer, Unicode, default

from nbgrader_plugin.client import ExchangeClient, ExchangeClientError
from nbgrader_plugin.tokens import URL_ENV, TokenEntry, TokenStore

try:
    from tqdm import tqdm
except ImportError:  # pragma: no cover - tqdm is a dependency; keep working without it
    tqdm = None


class Exchange(ABCExchange):
    """Settings shared by all lti-exchange plugin classes (``c.Exchange.*``)."""

    service_url = Unicode(
        "",
        help="URL of the lti-exchange service, e.g. https://exchange.example.edu "
        f"(default: ${URL_ENV}, or the URL stored with the course's token).",
    ).tag(config=True)

    token_file = Unicode(
        "",
        help="Token store file (default: $LTI_EXCHANGE_TOKEN_FILE or ~/.lti-exchange/tokens.json).",
    ).tag(config=True)

    cache = Unicode(
        "",
        help="Local cache of the user's submissions. Defaults to $JUPYTER_DATA_DIR/nbgrader_cache",
    ).tag(config=True)

    path_includes_course = Bool(
        False,
        help=dedent(
            """
            Whether the path for fetching/submitting assignments should be prefixed with the
            course name: `./course123/ps1` instead of `./ps1`.
            """
        ),
    ).tag(config=True)

    timeout = Float(300.0, help="Seconds to wait for the service to answer.").tag(config=True)

    progress_threshold = Integer(
        16 * 1024 * 1024, help="Show a progress bar for transfers of at least this many bytes."
    ).tag(config=True)

    @default("cache")
    def _cache_default(self) -> str:
        return os.path.join(jupyter_data_dir(), "nbgrader_cache")

    @default("service_url")
    def _service_url_default(self) -> str:
        return os.environ.get(URL_ENV, "")

    # -- tokens and clients -------------------------------------------------------------------
    @property
    def token_store(self) -> TokenStore:
        return TokenStore(Path(self.token_file).expanduser() if self.token_file else None)

    def token_entries(self) -> dict[str, TokenEntry]:
        try:
            return self.token_store.load()
        except ValueError as exc:
            self.fail(str(exc))
            raise  # unreachable: fail raises

    def course_ids(self) -> list[str]:
        """The course named by ``--course``, or every course the user holds a token for."""
        if self.coursedir.course_id:
            return [self.coursedir.course_id]
        return sorted(self.token_entries())

    def require_course(self) -> str:
        if not self.coursedir.course_id:
            entries = self.token_entries()
            if len(entries) == 1:
                self.coursedir.course_id = next(iter(entries))
            else:
                self.fail("No course id specified. Re-run with --course flag.")
        return self.coursedir.course_id

    def client(self, course_id: str) -> ExchangeClient:
        entry = self.token_entries().get(course_id)
        if entry is None:
            self.fail(
                f"You have no access token for course '{course_id}'. Launch the course's "
                "assignment from your LMS (or run `lti-exchange login`), then try again."
            )
        url = self.service_url or entry.service_url
        if not url:
            self.fail(
                "No exchange URL is configured: set c.Exchange.service_url in "
                f"nbgrader_config.py or the {URL_ENV} environment variable."
            )
        return ExchangeClient(url, entry, store=self.token_store, timeout=self.timeout)

    @contextlib.contextmanager
    def failures(self, action: str) -> Iterator[None]:
        """Turn client errors into ``ExchangeError`` with a message the user understands."""
        try:
            yield
        except ExchangeClientError as exc:
            self.fail(f"{action} failed: {exc}")

    # -- local paths --------------------------------------------------------------------------
    def local_assignment_path(self, course_id: str, assignment_id: str) -> Path:
        if self.path_includes_course:
            return Path(self.assignment_dir, course_id, assignment_id)
        return Path(self.assignment_dir, assignment_id)

    def cache_path(
        self, course_id: str, student_id: str, assignment_id: str, timestamp: str
    ) -> Path:
        return Path(self.cache, course_id, f"{student_id}+{assignment_id}+{timestamp}")

    def ignore(self) -> Callable[[str, list[str]], set[str]]:
        return ignore_patterns(
            exclude=self.coursedir.ignore,
            include=self.coursedir.include,
            max_file_size=self.coursedir.max_file_size,
            log=self.log,
        )

    def check_size(self, source: Path) -> None:
        total = sum(
            p.stat().st_size for p in source.rglob("*") if p.is_file() and not p.is_symlink()
        )
        limit = 1000 * self.coursedir.max_dir_size
        if total > limit:
            self.fail(
                f"The folder {source} holds {total} bytes, more than the limit of {limit} "
                "(CourseDirectory.max_dir_size, in kB). Remove large files and try again."
            )

    @contextlib.contextmanager
    def progress(self, total: int | None, description: str) -> Iterator[Callable[[int], object]]:
        """A progress bar on stderr for transfers of at least ``progress_threshold`` bytes."""
        if tqdm is None or (total is not None and total < self.progress_threshold):
            yield lambda _n: None
            return
        bar = tqdm(total=total, unit="B", unit_scale=True, desc=description, disable=None)
        try:
            yield bar.update
        finally:
            bar.close()

    # nbgrader calls these in order from start(); subclasses override what they need.
    def init_src(self) -> None:
        pass

    def init_dest(self) -> None:
        pass

    def copy_files(self) -> None:
        pass
