"""The model zoo's downloader against a loopback HTTP server (127.0.0.1) serving the shared checkpoint folder: a good
file, a wrong checksum, a transfer cut short and resumed, offline, ``--all`` through a mirror; the zoo's table in
``kdplugins.list --zoo`` and docs/model_zoo.md."""
import glob
import hashlib
import http.server
import os
import pytest
import sys
import threading
from conftest import REPO, free_port
from pathlib import Path

from kdplugins import download
from kdplugins.list import main as list_main
from kdplugins.runtime.option_checks import pretrained_path_problems
from kdplugins.utils.checkpoint import read_state_dict
from kdplugins.utils.model_zoo import BY_NAME, ZOO, zoo_table

SHARED_FILES = ('RFDN_AIM_x4', 'IMDN_x2', 'IMDN_x3', 'IMDN_x4', 'CARN-M_x234')


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with ``Range: bytes=N-`` (206) and, once, a transfer cut after ``cut_at`` bytes."""
    cut_at = None
    ranges = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = int(self.headers['Range'][len('bytes='):-1]) if self.headers.get('Range') else 0
        RangeHandler.ranges.append(start)
        self.send_response(206 if start else 200)
        self.send_header('Content-Length', str(len(data) - start))
        self.end_headers()
        end = len(data)
        if RangeHandler.cut_at is not None:
            end, RangeHandler.cut_at = RangeHandler.cut_at, None
        self.wfile.write(data[start:end])
        self.close_connection = True


@pytest.fixture
def server(tmp_path, shared_data):
    """``(base URL, served folder)``: a folder of links to the shared checkpoints, served on 127.0.0.1."""
    served = tmp_path / 'served'
    served.mkdir()
    for name in SHARED_FILES:
        os.symlink(shared_data / 'checkpoints' / BY_NAME[name].file, served / BY_NAME[name].file)
    RangeHandler.cut_at, RangeHandler.ranges = None, []
    httpd = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                            lambda *a, **k: RangeHandler(*a, directory=str(served), **k))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f'http://127.0.0.1:{httpd.server_address[1]}', served
    httpd.shutdown()
    httpd.server_close()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.shared_data('the public checkpoints in checkpoints/')
def test_good_file_then_skip(server, tmp_path):
    base, _ = server
    entry = BY_NAME['IMDN_x2']
    path = download.download(entry, tmp_path / 'zoo', base, progress=False)
    assert path == tmp_path / 'zoo' / 'IMDN_x2.pth'
    assert sha256(path) == entry.sha256 and path.stat().st_size == entry.size
    assert not path.with_name('IMDN_x2.pth.part').exists()
    assert download.download(entry, tmp_path / 'zoo', base, progress=False) == path
    assert RangeHandler.ranges == [0]  # the second call found the good file and asked nothing


@pytest.mark.shared_data('the public checkpoints in checkpoints/')
def test_wrong_checksum_removes_the_download(server, tmp_path):
    base, served = server
    (served / 'IMDN_x2.pth').unlink()
    os.symlink(served / 'IMDN_x3.pth', served / 'IMDN_x2.pth')
    dest = tmp_path / 'zoo' / 'IMDN_x2.pth'
    with pytest.raises(download.DownloadError) as error:
        download.download(BY_NAME['IMDN_x2'], tmp_path / 'zoo', base, progress=False)
    message = str(error.value)
    assert f'sha256 {BY_NAME["IMDN_x3"].sha256}, expected {BY_NAME["IMDN_x2"].sha256}' in message
    assert f'Fetch {base}/IMDN_x2.pth by hand and put it at {dest}' in message
    assert not dest.exists() and not dest.with_name('IMDN_x2.pth.part').exists()


@pytest.mark.shared_data('the public checkpoints in checkpoints/')
def test_truncated_transfer_resumes(server, tmp_path):
    base, _ = server
    entry = BY_NAME['RFDN_AIM_x4']
    part = tmp_path / 'zoo' / 'RFDN_AIM_x4.pth.part'
    RangeHandler.cut_at = 1000000
    with pytest.raises(download.DownloadError) as error:
        download.download(entry, tmp_path / 'zoo', base, progress=False)
    assert f'the partial file {part} is kept: run the command again to resume' in str(error.value)
    assert part.stat().st_size == 1000000 and not (tmp_path / 'zoo' / 'RFDN_AIM_x4.pth').exists()
    path = download.download(entry, tmp_path / 'zoo', base, progress=False)
    assert RangeHandler.ranges == [0, 1000000]
    assert sha256(path) == entry.sha256 and not part.exists()


def test_offline_names_the_url_and_destination(tmp_path):
    base = f'http://127.0.0.1:{free_port()}'  # nothing listens there: connection refused
    with pytest.raises(download.DownloadError) as error:
        download.download(BY_NAME['EDSR_Lx4'], tmp_path, base, progress=False)
    dest = tmp_path / BY_NAME['EDSR_Lx4'].file
    assert 'Offline?' in str(error.value) and 'refused' in str(error.value)
    assert f'Fetch {base}/{BY_NAME["EDSR_Lx4"].file} by hand and put it at {dest} (sha256 76ee1c8f prefix)' in str(
        error.value)


@pytest.mark.shared_data('the public checkpoints in checkpoints/')
def test_all_through_a_mirror(server, tmp_path, monkeypatch, capsys):
    base, _ = server
    monkeypatch.setenv(download.MIRROR_ENV, base)
    with pytest.raises(download.DownloadError) as error:  # the shared folder has no EDSR or VGG-19
        download.main(['--all', '--dir', str(tmp_path)])
    for name in SHARED_FILES:
        assert sha256(tmp_path / BY_NAME[name].file) == BY_NAME[name].sha256
    missing = [entry for entry in ZOO if entry.name not in SHARED_FILES]
    assert [line.split(':')[0] for line in str(error.value).splitlines()] == [entry.name for entry in missing]
    for entry in missing:
        assert f'{base}/{entry.file}: Not Found' in str(error.value)
    assert capsys.readouterr().out.splitlines() == [f'{name}: {tmp_path / BY_NAME[name].file}' for name in SHARED_FILES]


def test_command_line_refuses_unknown_names(monkeypatch, capsys):
    monkeypatch.setattr(sys, 'argv', ['kd-download', 'EDSR'])
    with pytest.raises(SystemExit) as exit_:
        download.command_line()
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith('kd-download: error: unknown zoo name(s) EDSR; give zoo names or --all')


def test_list_zoo_prints_the_table(monkeypatch, capsys):
    monkeypatch.setattr(sys, 'argv', ['kdplugins.list', '--zoo'])
    list_main()
    assert capsys.readouterr().out == '\n'.join(zoo_table()) + '\n'


def test_docs_table_is_the_data():
    text = (REPO / 'docs' / 'model_zoo.md').read_text()
    assert '\n'.join(zoo_table()) in text


def test_option_files_name_the_zoo():
    """Every option file the zoo says uses an entry exists and names its file."""
    for entry in ZOO:
        for pattern in (p for p in entry.used_by if p.startswith('options/')):
            files = glob.glob(str(REPO / pattern))
            assert files, pattern
            assert all(Path(entry.file).name in Path(f).read_text() for f in files), pattern


def test_missing_zoo_checkpoint_names_the_download_command(tmp_path):
    with pytest.raises(FileNotFoundError) as error:
        read_state_dict(
            'experiments/pretrained_models/EDSR/EDSR_Lx2_f256b32_DIV2K_official-be38e77d.pth',
            option='path.pretrain_network_t')
    assert str(error.value).endswith('It is EDSR_Lx2 of the model zoo: python -m kdplugins.download EDSR_Lx2 fetches '
                                     'it into experiments/pretrained_models/EDSR/EDSR_Lx2_f256b32_DIV2K_official-'
                                     'be38e77d.pth.')


def test_option_check_names_the_download_command():
    problems = pretrained_path_problems({'path': {'pretrain_network_t': 'experiments/pretrained_models/IMDN_x3.pth'}})
    assert len(problems) == 1 and problems[0].endswith(
        'It is IMDN_x3 of the model zoo: python -m kdplugins.download IMDN_x3 fetches it into '
        'experiments/pretrained_models/IMDN_x3.pth.')
