"""The zipapp's __main__ (build_zipapp.py copies this file to the archive's top).

zipimport never caches bytecode and reads only `foo.pyc` beside `foo.py`, which
one Python version can use. Any other version compiles every dfly module from
source at each start: 50-60 ms of CPU per `dfly get` on 3.8 or 3.13 with an
archive built on 3.11. So the archive also carries `__pycache__/foo.<tag>.pyc`
for every interpreter the build found, and this finder, put first on
sys.meta_path, loads dfly's modules from the one compiled for the running
Python. Anything it does not find (another version, a missing file) is left
to zipimport, which compiles the source as before.

Only what is loaded already is imported here (marshal, zipimport and the
import system itself), so the finder costs no start-up of its own.
"""
import marshal
import os
import sys
import zipimport

# The import system's own modules, loaded before any user code on 3.8-3.13.
_bootstrap = sys.modules["_frozen_importlib"]
_external = sys.modules["_frozen_importlib_external"]


class ArchiveBytecode:
    """Finds and loads `package` and its submodules from the archive's
    version-tagged bytecode."""

    def __init__(self, archive: str, package: str = "dfly"):
        self.archive = archive
        self.package = package
        self.zip = zipimport.zipimporter(archive)
        self.tag = sys.implementation.cache_tag
        self.magic = _external.MAGIC_NUMBER

    def find_spec(self, name, path=None, target=None):
        if self.tag is None or (name != self.package and not name.startswith(self.package + ".")):
            return None
        try:
            return self._spec(name)
        except Exception:   # whatever the archive holds, never worse than zipimport
            return None

    def _spec(self, name):
        rel = name.replace(".", "/")
        for stem, is_package in ((rel + "/__init__", True), (rel, False)):
            folder, _, base = stem.rpartition("/")
            cached = "%s/__pycache__/%s.%s.pyc" % (folder, base, self.tag)
            try:
                data = self.zip.get_data(cached)
            except OSError:
                continue
            # 16-byte header: magic, flags, then source mtime and size (or a hash),
            # which need no check: source and bytecode were archived together.
            if data[:4] != self.magic:
                return None
            spec = _bootstrap.ModuleSpec(name, self, origin=os.path.join(self.archive, stem + ".py"),
                                         loader_state=data, is_package=is_package)
            spec.has_location = True
            spec.cached = os.path.join(self.archive, cached)
            if is_package:
                spec.submodule_search_locations = [os.path.join(self.archive, rel)]
            return spec
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        spec = module.__spec__
        code, spec.loader_state = marshal.loads(memoryview(spec.loader_state)[16:]), None
        exec(code, module.__dict__)

    def get_source(self, name):
        """For tracebacks (linecache asks the module's loader)."""
        path = os.path.relpath(sys.modules[name].__spec__.origin, self.archive)
        return self.zip.get_data(path).decode("utf-8")

    def get_data(self, path):
        return self.zip.get_data(path)


def install(archive: str) -> bool:
    """Put the finder first on sys.meta_path; False when `archive` is no zip."""
    try:
        finder = ArchiveBytecode(archive)
    except (zipimport.ZipImportError, OSError):
        return False
    sys.meta_path.insert(0, finder)
    return True


if __name__ == "__main__":
    install(os.path.dirname(os.path.abspath(__file__)))
    from dfly.cli import main
    sys.exit(main())
