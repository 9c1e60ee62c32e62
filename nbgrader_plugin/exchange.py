"""The base class every plugin class shares: settings, tokens, the HTTP client, local paths."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from textwrap import dedent
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from jupyter_core.paths import jupyter_data_dir
from nbgrader.exchange.abc import Exchange as ABCExchange
from nbgrader.utils import ignore_patterns
from traitlets import Bool, Float, Integer, List, TraitError, Unicode, default, validate

from nbgrader_plugin.archive import TarPack, pack_directory
from nbgrader_plugin.client import (
    SAFE_RETRY_DELAYS,
    DownloadCut,
    ExchangeClient,
    ExchangeClientError,
)
from nbgrader_plugin.local_errors import describe
from nbgrader_plugin.portable_names import UnportableNames
from nbgrader_plugin.tokens import TOKEN_ENV, URL_ENV, TokenEntry, TokenStore

T = TypeVar("T")
MAX_RETRIES = 10  # download_retry_delays: at most this many waits ...
MAX_RETRY_WAIT = 600.0  # ... of at most this many seconds each


class Exchange(ABCExchange):
    """Settings shared by all lti-exchange plugin classes (``c.Exchange.*``)."""

    action = "The exchange operation"  # what the user asked for, as messages name it
    student_side = False  # a student's command: a full disk's advice names ``cache``

    if TYPE_CHECKING:  # nbgrader is untyped; its ``fail`` logs and raises ``ExchangeError``

        def fail(self, msg: str) -> NoReturn: ...

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

    download_retry_delays = List(
        Float(),
        default_value=list(SAFE_RETRY_DELAYS),
        help="Seconds to wait before each new try of a download that broke off half-way "
        "(fetch_assignment, fetch_feedback, collect): one more try per value; [] gives up at "
        "the first break.",
    ).tag(config=True)

    progress_threshold = Integer(
        16 * 1024 * 1024, help="Show a progress bar for transfers of at least this many bytes."
    ).tag(config=True)

    @validate("download_retry_delays")
    def _check_retry_delays(self, proposal: dict) -> list[float]:
        delays = [float(d) for d in proposal["value"]]
        if len(delays) > MAX_RETRIES or not all(0 <= d <= MAX_RETRY_WAIT for d in delays):
            raise TraitError(
                f"c.Exchange.download_retry_delays must hold at most {MAX_RETRIES} waits of 0 "
                f"to {MAX_RETRY_WAIT:g} seconds each, such as [1, 2, 4]; it is {delays}."
            )
        return delays

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
        return sorted(self.connected_entries())

    def require_course(self) -> str:
        if not self.coursedir.course_id:
            entries = self.connected_entries()
            if len(entries) == 1:
                self.coursedir.course_id = next(iter(entries))
            else:
                self.fail("No course id specified. Re-run with --course flag.")
        return self.coursedir.course_id

    def connected_entries(self) -> dict[str, TokenEntry]:
        """The token entries, failing with how to connect when there are none."""
        entries = self.token_entries()
        if not entries:
            self.fail(
                f"You are not connected to an exchange: there is no token in "
                f"{self.token_store.path} and {TOKEN_ENV} is not set. Launch an assignment "
                "from your LMS (its page connects your notebook server), or run "
                "`lti-exchange login --url URL --token TOKEN`, then try again."
            )
        return entries

    def start(self) -> object:
        try:
            return super().start()
        except OSError as exc:
            self.fail_locally(exc)
        finally:
            self.close_clients()

    def fail_locally(self, exc: OSError) -> NoReturn:
        """Fail with what the user's own disk did (full, over quota, not theirs, read-only)."""
        cache = self.cache if self.student_side else None
        self.fail(f"{self.action} failed: {describe(exc, cache)}")

    def close_clients(self) -> None:
        """Close the connections of the clients this operation opened."""
        clients: dict[str, ExchangeClient] = self.__dict__.pop("_clients", {})
        for client in clients.values():
            client.close()

    def client(self, course_id: str) -> ExchangeClient:
        """The client for ``course_id``, one per operation (its connection is kept alive
        between the operation's requests, and closed when the operation ends)."""
        clients: dict[str, ExchangeClient] = self.__dict__.setdefault("_clients", {})
        client = clients.get(course_id)
        if client is None:
            client = clients[course_id] = self._new_client(course_id)
        return client

    def _new_client(self, course_id: str) -> ExchangeClient:
        entry = self.token_entries().get(course_id)
        if entry is None:
            self.fail(
                f"You have no access token for course '{course_id}'. Launch the course's "
                "assignment from your LMS (or run `lti-exchange login`), then try again."
            )
        url = self.exchange_url(entry)
        if not url:
            self.fail(
                "No exchange URL is configured: set c.Exchange.service_url in "
                f"nbgrader_config.py or the {URL_ENV} environment variable."
            )
        return ExchangeClient(url, entry, store=self.token_store, timeout=self.timeout)

    def exchange_url(self, entry: TokenEntry) -> str:
        """The URL stored with the token (where ``lti-exchange login`` or the LMS hand-off
        checked it), else the configured one; a configured URL that differs is warned about and
        not used, since the token belongs to the service that issued it."""
        configured = self.service_url.strip().rstrip("/")
        stored = (entry.service_url or "").strip().rstrip("/")
        if stored and configured and stored != configured:
            self.log.warning(
                "c.Exchange.service_url (or $%s) is %s, but your token for course %s was stored "
                "for %s; using %s. To use %s, run `lti-exchange login --url %s --token TOKEN`.",
                URL_ENV,
                configured,
                entry.course_id,
                stored,
                stored,
                configured,
                configured,
            )
        return stored or configured

    @contextlib.contextmanager
    def failures(self, action: str | None = None) -> Iterator[None]:
        """Turn client errors into ``ExchangeError`` with a message the user understands
        ("<action> failed: …"; the class's own ``action`` unless a step names itself)."""
        try:
            yield
        except ExchangeClientError as exc:
            self.fail(f"{action or self.action} failed: {exc}")

    def again_if_cut(self, client: ExchangeClient, attempt: Callable[[], T]) -> T:
        """``attempt()`` (a download and the reading of its body) and, while the body breaks
        off half-way, again after each of ``download_retry_delays``, saying so each time."""

        def tell(error: ExchangeClientError, delay: float, number: int, attempts: int) -> None:
            what = error.summary if isinstance(error, DownloadCut) else str(error)
            self.log.warning(
                "%s: %s. Trying again in %g s (attempt %d of %d).",
                self.action,
                what,
                delay,
                number,
                attempts,
            )

        return client.again_if_cut(tuple(self.download_retry_delays), attempt, tell)

    def pack_folder(self, source: Path, again: str, **options: Any) -> tuple[TarPack, int]:
        """``pack_directory(source, **options)``; names the exchange would refuse fail here,
        all listed, before anything is sent (``again``: what the user then runs again)."""
        try:
            pack, size = pack_directory(source, **options)
        except UnportableNames as exc:
            self.fail(
                f"{self.action} failed: {len(exc.problems)} file or folder name(s) in {source} "
                "cannot be sent (the exchange keeps only names that unpack the same way on "
                f"Windows, macOS and Linux):\n{exc}\nRename them, or move them out of the "
                f"folder, then {again}. Nothing was sent."
            )
        if pack.links_left_out:
            shown = ", ".join(pack.links_left_out[:10])
            more = len(pack.links_left_out) - 10
            self.log.warning(
                "%d symbolic link(s) in %s are not sent (only the files in the folder are): "
                "%s%s. If one of them belongs in it, replace the link with a copy of its file "
                "or folder, then %s.",
                len(pack.links_left_out),
                source,
                shown,
                f" and {more} more" if more > 0 else "",
                again,
            )
        return pack, size

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

    def check_size(self, source: Path, refuse_dropped_files: bool = False) -> None:
        """Fail when ``source`` is over ``CourseDirectory.max_dir_size`` or, with
        ``refuse_dropped_files``, holds files nbgrader would leave out for being over
        ``CourseDirectory.max_file_size``; the message names the values to set (in kB, as
        nbgrader counts them: 1 kB = 1000 bytes)."""
        limits = self.size_limits(source, refuse_dropped_files)
        if limits:
            self.fail(limits)

    def size_limits(self, source: Path, refuse_dropped_files: bool = False) -> str:
        """The message for ``check_size``, or '' when everything fits."""
        total, too_large = _folder_sizes(
            source, self.coursedir, 1000 * self.coursedir.max_file_size
        )
        dir_limit, file_limit = self.coursedir.max_dir_size, self.coursedir.max_file_size
        problems, settings = [], []
        if refuse_dropped_files and too_large:
            biggest = max(size for _name, size in too_large)
            names = ", ".join(f"{name} ({_kb(size)} kB)" for name, size in too_large[:5])
            problems.append(
                f"{len(too_large)} file(s) over CourseDirectory.max_file_size ({file_limit} kB), "
                f"which nbgrader would leave out: {names}"
            )
            settings.append(f"c.CourseDirectory.max_file_size = {_kb(biggest)}")
        if total > 1000 * dir_limit:
            problems.append(
                f"{_kb(total)} kB in all, over CourseDirectory.max_dir_size ({dir_limit} kB)"
            )
        if settings or total > 1000 * dir_limit:
            settings.append(f"c.CourseDirectory.max_dir_size = {max(dir_limit, _kb(total))}")
        if not problems:
            return ""
        return (
            f"{source} holds {'; and '.join(problems)}. Remove large files, or set (in kB) "
            f"{' and '.join(settings)} in nbgrader_config.py, then try again."
        )

    @contextlib.contextmanager
    def progress(self, total: int | None, description: str) -> Iterator[Callable[[int], object]]:
        """A progress bar on stderr for transfers of at least ``progress_threshold`` bytes."""
        if total is not None and total < self.progress_threshold:
            yield lambda _n: None
            return
        try:
            from tqdm import tqdm  # imported here: ``nbgrader list`` never needs it
        except ImportError:  # pragma: no cover - tqdm is a dependency; keep working without it
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


def _kb(size: int) -> int:
    """Bytes in nbgrader's kB (1000 bytes), rounded up so that a limit of this value holds it."""
    return -(-size // 1000)


def _folder_sizes(
    source: Path, coursedir, max_file_bytes: int
) -> tuple[int, list[tuple[str, int]]]:
    """The total size of the files under ``source`` that nbgrader's ignore/include rules keep,
    and those of them over ``max_file_bytes`` (no limit when 0)."""
    keep = ignore_patterns(exclude=coursedir.ignore, include=coursedir.include)
    total, too_large = 0, []
    for directory, dirnames, filenames in os.walk(source):
        skipped = keep(directory, dirnames + filenames)
        dirnames[:] = [d for d in dirnames if d not in skipped]
        for name in filenames:
            file = Path(directory, name)
            if name in skipped or file.is_symlink() or not file.is_file():
                continue
            size = file.stat().st_size
            total += size
            if max_file_bytes and size > max_file_bytes:
                too_large.append((str(file.relative_to(source)), size))
    return total, sorted(too_large)
