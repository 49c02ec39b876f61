"""Build dfly.pyz: the dfly package plus a __main__ that exits with main()'s code.

    python3 build_zipapp.py [-o dfly.pyz]
"""
import argparse
import compileall
import os
import shutil
import tempfile
import zipapp

HERE = os.path.dirname(os.path.abspath(__file__))
MAIN = "import sys\nfrom dfly.cli import main\nsys.exit(main())\n"


def build(target: str) -> str:
    with tempfile.TemporaryDirectory() as staging:
        shutil.copytree(os.path.join(HERE, "dfly"), os.path.join(staging, "dfly"),
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        with open(os.path.join(staging, "__main__.py"), "w") as f:
            f.write(MAIN)
        # zipimport cannot cache bytecode, so ship it: foo.pyc beside foo.py is where it
        # looks. Other Python versions see the magic number differ and use the source.
        compileall.compile_dir(os.path.join(staging, "dfly"), legacy=True, quiet=1)
        zipapp.create_archive(staging, target, interpreter="/usr/bin/env python3", compressed=True)
    return target


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default=os.path.join(HERE, "dfly.pyz"))
    print(build(parser.parse_args().output))
