"""`import dfly` (which every command's start makes) does not load the client's
tree; `from dfly import Client` still does, on first use."""
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _loaded(code: str) -> str:
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_importing_the_package_and_the_cli_leaves_the_client_unloaded():
    assert _loaded("import sys, dfly, dfly.cli; print('dfly.client' in sys.modules)") == "False"


def test_the_public_api_is_still_importable_from_the_package():
    code = ("import dfly; from dfly import Client, DownloadResult; from dfly.client import Client as C; "
            "print(Client is C, DownloadResult.__name__, hasattr(dfly, 'Nothing'))")
    assert _loaded(code) == "True DownloadResult False"


def test_the_version_and_the_top_help_load_no_command_s_settings():
    code = ("import sys, contextlib, io, dfly.cli\n"
            "for argv in (['--version'], ['--help'], ['nosuchcommand']):\n"
            "    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "        try:\n"
            "            dfly.cli.main(argv)\n"
            "        except SystemExit:\n"
            "            pass\n"
            "print(sorted(m for m in sys.modules if m.endswith('.config')))")
    assert _loaded(code) == "[]"
