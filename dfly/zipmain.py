"""The zipapp's __main__ (build_zipapp.py copies this file to the archive's top).

zipimport never caches bytecode and reads only `foo.pyc` beside `foo.py`, which
one Python version can use. Any other version compiles every dfly module from
source at each start: 50-60 ms of CPU per `dfly get` on 3.8 or 3.13 with an
archive built on 3.11. So the archive also carries, for every interpreter the
build found, one file `__bytecode__/<cache tag>` holding all of dfly's compiled
modules (one file, not one per module: zipimport reads the whole archive
directory at start, ~8 us an entry), stored uncompressed. This finder, put
first on sys.meta_path, loads dfly's modules from the running Python's file.
Anything it does not find (another version, a module missing) is left to
zipimport, which compiles the source as before.

Only what is loaded already is imported here (marshal, zipimport and the
import system itself), so the finder costs no start-up of its own.
"""
import marshal
import os
import sys
import zipimport

FORMAT = "dfly-bytecode-1"
FOLDER = "__bytecode__"

# The import system's own modules, loaded before any user code on 3.8-3.13.
_bootstrap = sys.modules["_frozen_importlib"]
_external = sys.modules["_frozen_importlib_external"]


def bundle(magic: bytes, modules: dict) -> bytes:
    """The file for one interpreter: the magic number of the Python that compiled
    it and {module name: (is package, marshalled code)}."""
    return marshal.dumps((FORMAT, magic, modules))


class ArchiveBytecode:
    """Finds and loads the modules in `modules` (as `bundle` stores them) from
    the archive, with the sources beside them for tracebacks."""

    def __init__(self, archive: str, modules: dict):
        self.archive = archive
        self.modules = modules
        self.zip = zipimport.zipimporter(archive)
        self.cached = os.path.join(archive, FOLDER, sys.implementation.cache_tag)

    def find_spec(self, name, path=None, target=None):
        entry = self.modules.get(name)
        if entry is None:
            return None
        is_package, code = entry
        spec = _bootstrap.ModuleSpec(name, self, origin=os.path.join(self.archive, _source(name, is_package)),
                                     loader_state=code, is_package=is_package)
        spec.has_location = True
        spec.cached = self.cached
        if is_package:
            spec.submodule_search_locations = [os.path.join(self.archive, name.replace(".", "/"))]
        return spec

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        exec(marshal.loads(module.__spec__.loader_state), module.__dict__)

    def get_source(self, name):
        """For tracebacks (linecache asks the module's loader, also for a module
        whose import failed and is gone from sys.modules)."""
        entry = self.modules.get(name)
        if entry is None:
            raise ImportError("no module %s in %s" % (name, self.archive), name=name)
        return self.zip.get_data(_source(name, entry[0])).decode("utf-8")

    def get_data(self, path):
        return self.zip.get_data(path)


def _source(name: str, is_package: bool) -> str:
    """The archive path of a module's source."""
    return name.replace(".", "/") + ("/__init__.py" if is_package else ".py")


def install(archive: str) -> bool:
    """Put the finder for the running Python's bytecode first on sys.meta_path;
    False when `archive` holds none it can use."""
    tag = sys.implementation.cache_tag
    if tag is None:
        return False
    try:
        data = zipimport.zipimporter(archive).get_data(FOLDER + "/" + tag)
        form, magic, modules = marshal.loads(data)
    except Exception:   # no archive, no file for this Python, a damaged one: zipimport
        return False
    if form != FORMAT or magic != _external.MAGIC_NUMBER or not isinstance(modules, dict):
        return False
    sys.meta_path.insert(0, ArchiveBytecode(archive, modules))
    return True


if __name__ == "__main__":
    install(os.path.dirname(os.path.abspath(__file__)))
    from dfly.cli import main
    sys.exit(main())
