"""``python -m kdplugins.download NAME... | --all [--dir DIR] [--mirror URL]`` (``kd-download``): fetch the public
checkpoints of the model zoo (:mod:`kdplugins.utils.model_zoo`) into ``experiments/pretrained_models``.

Each file is written to ``<file>.part`` (a repeated command resumes it with an HTTP Range request), its sha256 checked,
and only then renamed to its name (so a file under its own name is always a checked one). A wrong checksum removes the
``.part`` file (a resume would only append to bad bytes); an interrupted transfer keeps it for the next run. A file
already present with the right checksum is skipped. Training never downloads: a missing checkpoint is an error that
names this command.

``--mirror URL`` (or ``KDPLUGINS_ZOO_MIRROR``) fetches ``URL/<file>`` instead of the official locations, for a
mirror laid out as ``experiments/pretrained_models`` (and for the tests' loopback server).
"""
import argparse
import hashlib
import http.client
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from tqdm import tqdm
from typing import List, Optional, Sequence

from kdplugins.utils.errors import ConfigurationError, exit_on_configuration_error
from kdplugins.utils.model_zoo import BY_NAME, ZOO, ZooEntry

DEFAULT_DIR = os.path.join('experiments', 'pretrained_models')
MIRROR_ENV = 'KDPLUGINS_ZOO_MIRROR'
CHUNK = 1 << 16


class DownloadError(ConfigurationError, OSError):
    """A checkpoint could not be fetched or failed its checksum; the message says what to fetch by hand and where."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def matches(entry: ZooEntry, digest: str) -> bool:
    """The full sha256, or its prefix where only the release name's prefix is known (see model_zoo)."""
    return digest.startswith(entry.sha256)


def urls_of(entry: ZooEntry, mirror: Optional[str]) -> List[str]:
    return [mirror.rstrip('/') + '/' + entry.file] if mirror else list(entry.urls)


def by_hand(entry: ZooEntry, url: str, dest: Path) -> str:
    prefix = ' prefix' if entry.sha256_is_prefix else ''
    return f'Fetch {url} by hand and put it at {dest} (sha256 {entry.sha256}{prefix}).'


def transfer(url: str, part: Path, progress: bool) -> None:
    """Append ``url``'s bytes past ``part``'s size to ``part`` (HTTP Range); start over when the server ignores it."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={'Range': f'bytes={offset}-'} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as error:
        if error.code == 416:  # the .part file is already complete
            return
        raise
    with response:
        if response.status != 206:
            offset = 0
        length = response.headers.get('Content-Length')
        expected = int(length) if length is not None else None
        received = 0
        with open(part, 'ab' if offset else 'wb') as f, tqdm(
                total=None if expected is None else offset + expected,
                initial=offset,
                unit='B',
                unit_scale=True,
                desc=part.name[:-len('.part')],
                disable=not progress) as bar:
            while True:
                try:
                    block = response.read(CHUNK)
                except http.client.IncompleteRead as error:
                    f.write(error.partial)
                    received += len(error.partial)
                    break
                if not block:
                    break
                f.write(block)
                received += len(block)
                bar.update(len(block))
        if expected is not None and received < expected:
            raise ConnectionError(f'transfer ended after {offset + received} of {offset + expected} bytes')


def download(entry: ZooEntry, directory: Path, mirror: Optional[str] = None, progress: bool = True) -> Path:
    """Fetch ``entry`` into ``directory`` (see the module docstring); returns its path, or raises DownloadError."""
    dest = Path(directory) / entry.file
    urls = urls_of(entry, mirror)
    if dest.exists():
        digest = sha256_of(dest)
        if matches(entry, digest):
            return dest
        raise DownloadError(f'{dest} exists but its sha256 is {digest}, not {entry.sha256}: delete it and run '
                            f'python -m kdplugins.download {entry.name} again. ' + by_hand(entry, urls[0], dest))
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + '.part')
    failures = []
    for url in urls:
        try:
            transfer(url, part, progress)
        except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
            reason = getattr(error, 'reason', error)
            kept = f' (the partial file {part} is kept: run the command again to resume)' if part.exists() else ''
            failures.append(f'{url}: {reason}{kept}')
            continue
        digest = sha256_of(part)
        if not matches(entry, digest):
            part.unlink()
            raise DownloadError(f'{entry.name}: the file from {url} has sha256 {digest}, expected {entry.sha256}; '
                                'the download was removed. ' + by_hand(entry, url, dest))
        os.replace(part, dest)
        return dest
    raise DownloadError(f'{entry.name}: could not download ({"; ".join(failures)}). Offline? ' +
                        by_hand(entry, urls[0], dest))


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='kd-download', description=__doc__.split('\n\n')[0])
    parser.add_argument('names', nargs='*', metavar='NAME', help='zoo names: ' + ', '.join(BY_NAME))
    parser.add_argument('--all', action='store_true', help='every checkpoint of the zoo')
    parser.add_argument('--dir', default=DEFAULT_DIR, help=f'destination folder (default {DEFAULT_DIR})')
    parser.add_argument(
        '--mirror',
        default=os.environ.get(MIRROR_ENV),
        help=f'base URL of a mirror laid out like --dir (default ${MIRROR_ENV}; official URLs if unset)')
    args = parser.parse_args(argv)
    unknown = [name for name in args.names if name not in BY_NAME]
    if unknown or args.all == bool(args.names):
        raise ConfigurationError((f'unknown zoo name(s) {", ".join(unknown)}; ' if unknown else '') +
                                 'give zoo names or --all (not both). Names: ' + ', '.join(BY_NAME) +
                                 ' (python -m kdplugins.list --zoo shows the table).')
    return args


def main(argv: Optional[Sequence[str]] = None) -> None:
    args = parse_args(argv)
    entries = ZOO if args.all else [BY_NAME[name] for name in args.names]
    errors = []
    for entry in entries:
        try:
            print(f'{entry.name}: {download(entry, Path(args.dir), args.mirror)}', flush=True)
        except DownloadError as error:
            errors.append(str(error))
    if errors:
        raise DownloadError('\n'.join(errors))


def command_line() -> None:
    """Console entry point ``kd-download``: configuration and download errors print their message alone, exit 2."""
    with exit_on_configuration_error('kd-download'):
        main(sys.argv[1:])


if __name__ == '__main__':
    command_line()
