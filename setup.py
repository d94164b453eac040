"""The one thing pyproject.toml cannot say: where the shipped examples go in a wheel.

characters/, presets/ and extensions/ stay at the top of the repository, where people
look for them and where a checkout (`pip install -e .`, as start.sh does) reads them in
place. A wheel installs only packages, so they are mapped into the package here, as
webui/shipped/{characters,presets,extensions,tools}; webui/userdata/folders.py looks there
first and falls back to the repository. This lives in setup.py because pyproject.toml's
`packages` is either a list or `find`, never found packages plus mapped folders; copying
at build time or symlinks would be more machinery for the same result.
"""
from setuptools import find_namespace_packages, find_packages, setup

SHIPPED: dict[str, str] = {}  # package name -> folder
for top in ("characters", "presets", "extensions", "tools"):
    # Every folder below is listed too (each extension is one), so that setuptools
    # copies it rather than warning that it would be left out.
    for sub in ["", *find_namespace_packages(top, exclude=["__pycache__", "*.__pycache__"])]:
        SHIPPED[".".join(filter(None, ("webui.shipped", top, sub)))] = "/".join(filter(None, (top, sub.replace(".", "/"))))

setup(
    packages=find_packages(include=["loaders", "loaders.*", "webui", "webui.*"]) + list(SHIPPED),
    package_dir=SHIPPED,
    # An extension's modules are copied like its other files: extensions are imported
    # by path (webui/extensions/loading.py), never as webui.shipped.*.
    package_data={name: ["*"] for name in SHIPPED},
    exclude_package_data={name: ["*.pyc"] for name in SHIPPED},
)
